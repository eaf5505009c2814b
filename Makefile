# The two commands of the README. Each bootstraps uv and the locked dependencies first.
.PHONY: demo test

demo:
	@scripts/bootstrap.sh
	@PATH="$$HOME/.local/bin:$$PATH" uv run ledgersync demo

test:
	@scripts/test.sh
