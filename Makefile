# The two commands of the README. Each bootstraps uv and the locked dependencies first.
.PHONY: demo test

demo:
	@scripts/demo.sh

test:
	@scripts/test.sh
