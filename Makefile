# The two commands. Both install whatever is missing first (scripts/install.sh).
.PHONY: run test install

## Serve the app on its embedded default: one node, in memory, http://127.0.0.1:3000
run: install
	cargo leptos serve --release

## Run every check and test (what CI runs)
test:
	./scripts/test.sh

install:
	./scripts/install.sh
