# The README's commands. Each target sets up whatever is missing first (idempotent).
.PHONY: env test demo shell
.DEFAULT_GOAL := test

env:
	@bash scripts/setup_env.sh

test: env
	@bash scripts/run_tests.sh

demo: env
	@bash scripts/run_in_env.sh detr-ros demo

shell: env
	@bash --rcfile <(echo '[ -f ~/.bashrc ] && . ~/.bashrc; . scripts/activate.sh') -i
