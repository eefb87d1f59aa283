# The two commands of the README. Both install what they need (scripts/setup.sh is idempotent).
.PHONY: demo test test-slow setup lint bench clean mutate

setup:
	@bash scripts/setup.sh

demo: setup
	.venv/bin/mmsin demo

test: setup
	.venv/bin/ruff check src tests benchmarks scripts
	.venv/bin/ruff format --check src tests benchmarks scripts
	.venv/bin/mypy
	.venv/bin/python -m pytest -q -n 2 --dist loadfile -m "not slow"

# The tests marked slow (held-out notes through CREPE, real experiments, DDP, SIGKILL, the
# benchmark runner): CI runs them after `make test` (.ci/run).
test-slow: setup
	.venv/bin/python -m pytest -q -n 2 --dist loadfile -m slow

lint: setup
	.venv/bin/ruff check --fix src tests benchmarks scripts
	.venv/bin/ruff format src tests benchmarks scripts

# Deliberate breakages of the code, each of which must turn the tests red (docs/reliability.md).
mutate: setup
	.venv/bin/python scripts/mutate.py

bench: setup
	.venv/bin/python benchmarks/run.py

clean:
	rm -rf .venv .pytest_cache .ruff_cache .mypy_cache
