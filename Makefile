# The two Quickstart commands. Each creates .venv in the checkout when missing and installs
# what it needs (scripts/bootstrap.sh; a stamp skips the install when nothing changed).
.PHONY: demo test

demo:
	bash scripts/bootstrap.sh
	.venv/bin/mqc-edge demo

test:
	bash scripts/bootstrap.sh
	.venv/bin/python -m pytest -q
