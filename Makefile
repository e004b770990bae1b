# The two Quickstart commands: `make demo` (install + train ViT on digits) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install install-test demo test test-slow lint benchmark text-to-image

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e .

install-test: $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'

demo: install
	$(BIN)/hubformers train vit --output-dir outputs/vit-digits --overwrite-output-dir

test: install-test
	$(BIN)/python -m pytest -q

test-slow: install-test
	$(BIN)/python -m pytest -q -m slow

lint: $(BIN)/python
	$(BIN)/pip install -q ruff
	$(BIN)/ruff check && $(BIN)/ruff format --check

benchmark: install-test
	for model in vit swin clip vae longformer; do $(BIN)/hubformers benchmark $$model || exit 1; done

# Text to image: train a VAE, CLIP and a judging ViT on digits, then draw every digit from its prompt.
text-to-image: $(BIN)/python
	$(BIN)/pip install -q -e '.[clip]'
	$(BIN)/hubformers train vae --dataset digits --latent-size 8 --epochs 300 --output-dir outputs/vae-digits --overwrite-output-dir
	$(BIN)/hubformers train clip --output-dir outputs/clip-digits --overwrite-output-dir
	$(BIN)/hubformers train vit --output-dir outputs/vit-digits --overwrite-output-dir
	$(BIN)/hubformers evaluate-generation --clip outputs/clip-digits --vae outputs/vae-digits \
		--classifier outputs/vit-digits --seeds 5 --out outputs/text-to-image.png
