# m2vsl: every entry point a user needs. Each target sets itself up; nothing needs activating.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.m2vsl-installed
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export PYTHONUNBUFFERED := 1

.PHONY: setup test test-fast test-slow test-all sync-check wheel-check reproduce second-set fp32 full pipeline-tiny bench readme docs clean-nbs export

## setup: create .venv from the one pinned lock file (quick no-op when nothing changed)
setup: $(STAMP)
$(STAMP): requirements.lock setup.py settings.ini
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

## export: notebooks -> package (m2vsl/ is never edited by hand)
export: setup
	nbdev_export

## clean-nbs: strip outputs/metadata from nbs/ (keeps the papermill `parameters` tag)
clean-nbs: setup
	nbdev_clean

## sync-check: fail when exporting or cleaning the notebooks would change a file
sync-check: setup
	bash tools/sync_check.sh

## wheel-check: build a wheel, install it with its declared dependencies alone in a fresh venv (kept per requirements
##              in ~/.cache/m2vsl-wheel-check, ~6 GB), import every module, localize one generated clip
wheel-check: setup
	bash tools/wheel_check.sh

## the tests' temporary files (notebooks' and pytest's) go to one folder that is removed when the tests end, pass or
## fail: they are not left in /tmp (a full disk once stopped CI)
TEST_TMP := $(CURDIR)/.test-tmp
define in_test_tmp
rm -rf $(TEST_TMP) && mkdir -p $(TEST_TMP) && echo "+ $(strip $(1))   (TMPDIR=$(TEST_TMP))" && \
status=0 && { TMPDIR=$(TEST_TMP) bash -c '$(strip $(1))' || status=$$?; } && rm -rf $(TEST_TMP) && exit $$status
endef

## test-fast: notebook tests (slow cells skipped) + fast pytest
test-fast: setup
	@$(call in_test_tmp, nbdev_test --n_workers 2 --do_print && pytest -q -m "not slow" tests)

## test: what CI runs (.ci/run), ~15 min on 2 cores: the sync check, the wheel check, every notebook's tests (their
##       `#| slow` cells included) and every pytest test not marked slow
test: setup sync-check wheel-check
	@$(call in_test_tmp, nbdev_test --n_workers 2 --flags slow && pytest -q -rxX --durations=20 -m "not slow" tests)

## test-slow: the pytest tests marked slow (more than ~30 s each: the tiny pipeline, resume after SIGKILL, torchrun,
##            the miniature real layouts, ...), ~25 min on 2 cores; run it, or test-all, before a change lands
test-slow: setup
	@$(call in_test_tmp, pytest -q -rxX --durations=20 -m slow tests)

## test-all: every test the project has (test, then test-slow), ~40 min on 2 cores
test-all: test test-slow

## reproduce: the main job: set up, then run the whole pipeline (dvc repro) on the embedded benchmark
reproduce: setup
	bash tools/reproduce.sh

## second-set: the default profile on the second embedded set (kit `clipart`: other pictures, photographs and sounds), run
##             with `make reproduce` in a fresh clone of the committed tree (build/second-set); its learning check and
##             tables land in reports/second_set/ (~25 min on 2 cores)
second-set: setup
	bash tools/clone_run.sh second_set --material clipart

## fp32: the default profile in fp32 (train.amp: none), as a CPU without native bf16 runs it, in a fresh clone of the
##       committed tree; its learning check, tables and figures land in reports/fp32/ with the time it took
fp32: setup
	bash tools/clone_run.sh fp32 --amp none

## full: the `full` profile (every baseline, Figure 4's batch sizes, a second seed for M2VSL and EZ-VSL) in a fresh clone
##       of the committed tree sharing this tree's DVC cache (the stages it shares with the last `make reproduce` are
##       restored, not rerun); its tables, figures and learning check land in reports/full/ (~1 h on 2 cores)
full: setup
	bash tools/clone_run.sh full --profile profiles/full.yaml

## bench: the benchmark suite (the machine's ceiling: native precisions and GEMM GFLOP/s; train step of every method and
##        the authors' EZ-VSL; data loader; inference; localize --video on a 30 s clip; metrics) -> bench/out/bench.{json,md}
##        another machine class: make bench BENCH_OUT=bench/out/<class> (a section of its own in the report; <class> as
##        bench/bench_ceiling.py's machine_class names it, e.g. amd-epyc-avx2)
BENCH_OUT ?= bench/out
BENCH_TRAIN_ARGS ?=
bench: setup
	mkdir -p $(BENCH_OUT)
	python bench/bench_ceiling.py --out $(BENCH_OUT)/ceiling.json
	python bench/bench_train.py $(BENCH_TRAIN_ARGS) --out $(BENCH_OUT)/train.json
	python bench/bench_loader.py --size 96 --sample-rate 11025 --n-fft 128 --win-length 128 --hop-length 441 --out $(BENCH_OUT)/loader.json
	if [ -d data/embedded/vggsound ]; then python bench/bench_loader.py --root data/embedded/vggsound --split train --limit 400 --size 96 --sample-rate 11025 --n-fft 128 --win-length 128 --hop-length 441 --out $(BENCH_OUT)/loader_embedded.json; fi
	python bench/bench_inference.py --out $(BENCH_OUT)/inference.json
	python bench/bench_video.py --out $(BENCH_OUT)/video.json
	python bench/bench_metrics.py --out $(BENCH_OUT)/metrics.json
	python bench/report.py

## docs: the explorer and every library notebook, executed and rendered as HTML in docs/_site/ (offline, nbconvert;
##       git-ignored, as is docs/_build/ with the executed notebooks); DOCS_ONLY="01_audio 72_explorer" builds some
DOCS_ONLY ?=
docs: setup
	python docs/build.py $(if $(DOCS_ONLY),--only $(DOCS_ONLY))

## readme: README.md from nbs/index.ipynb, executed on the pipeline's reports (the dvc.yaml readme stage's commands)
readme: setup
	papermill --no-progress-bar --cwd . -k python3 --language python nbs/index.ipynb reports/index.ipynb
	jupyter nbconvert --log-level WARN --to markdown --no-input reports/index.ipynb --output-dir . --output README
