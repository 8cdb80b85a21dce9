# webserv: 42 targets (all clean fclean re) plus test, lint, fmt-check, bench, soak.

NAME        := webserv
CARGO       ?= cargo
PYTHON      ?= python3
RELEASE_BIN := target/release/$(NAME)
PY_REQS     := tests/python/requirements.txt
# Debian package names; each also names the command that tells it is installed.
APT_PKGS    := php-cgi perl
# apt-get needs root: use sudo only when we are not root already.
SUDO        := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: all $(NAME) clean fclean re test deps py-deps apt-deps fmt-check lint \
        build-release cargo-test py-test bench bench-config

all: $(NAME)

# Always delegate to cargo: it knows when the binary is out of date.
$(NAME): build-release
	cp $(RELEASE_BIN) $(NAME)

build-release:
	$(CARGO) build --release

# Coverage-guided fuzzing (nightly + cargo-fuzz): each target of fuzz/ for
# FUZZ_SECS seconds, seeds in fuzz/corpus/ (committed, small), what it
# learns in fuzz/work/ (ignored). A crash is left in
# fuzz/artifacts/TARGET/; copy it to fuzz/regressions/TARGET/ once fixed, and
# `cargo test` (tests/fuzz_replay.rs) replays it on stable.
FUZZ_SECS ?= 60
FUZZ_TARGETS := request_head chunked multipart path range cgi_head upstream_head config fmt route
.PHONY: fuzz
fuzz:
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz
	@for t in $(FUZZ_TARGETS); do \
	  echo "== $$t ($(FUZZ_SECS)s)"; \
	  mkdir -p fuzz/work/$$t; \
	  (cd fuzz && $(CARGO) +nightly fuzz run -O $$t work/$$t corpus/$$t -- \
	     -max_total_time=$(FUZZ_SECS) -max_len=4096 -print_final_stats=1) || exit 1; \
	done

# A self-signed certificate for conf.d/examples/tls.conf (never committed).
.PHONY: cert
cert:
	$(CARGO) run --release --example selfsigned -- conf.d/examples/tls

clean:
	$(CARGO) clean

fclean: clean
	rm -f $(NAME)

re: fclean
	$(MAKE) all

# ---- tests ---------------------------------------------------------------

# Order matters: cheap checks first, so CI fails fast (and never in parallel).
.NOTPARALLEL:
test: deps fmt-check lint build-release cargo-test py-test

deps: py-deps apt-deps

# pip is a no-op when the requirements are already satisfied. Debian's
# system Python refuses plain installs (PEP 668): retry as --user there.
py-deps:
	@$(PYTHON) -m pip --version >/dev/null 2>&1 || $(MAKE) --no-print-directory apt-install PKGS=python3-pip
	@$(PYTHON) -m pip install -q --disable-pip-version-check -r $(PY_REQS) 2>/dev/null \
	  || $(PYTHON) -m pip install -q --disable-pip-version-check --user --break-system-packages -r $(PY_REQS)

# The CGI tests need php-cgi and perl; install them only when missing.
apt-deps:
	@missing=""; \
	for cmd in $(APT_PKGS); do command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$cmd"; done; \
	if [ -n "$$missing" ]; then $(MAKE) --no-print-directory apt-install PKGS="$$missing"; fi

.PHONY: apt-install
apt-install:
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(PKGS)

fmt-check:
	$(CARGO) fmt --all -- --check

lint:
	$(CARGO) clippy --all-targets -- -D warnings

cargo-test:
	$(CARGO) test --release

# The Python suite drives the release binary built above.
py-test: build-release
	WEBSERV_BIN="$(CURDIR)/$(RELEASE_BIN)" $(PYTHON) -m pytest -q tests/python

# A walk through the demo site in headless Chromium (apt) driven by playwright-core
# (npm). Not part of `test`: CI has no browser. Screenshots: tests/browser/screenshots/.
.PHONY: browser-test
browser-test: build-release
	WEBSERV_BIN="$(CURDIR)/$(RELEASE_BIN)" tests/browser/run.sh

bench: build-release
	WEBSERV_BIN="$(CURDIR)/$(RELEASE_BIN)" bench/run.sh
	WEBSERV_BIN="$(CURDIR)/$(RELEASE_BIN)" bench/bodies.sh
	WEBSERV_BIN="$(CURDIR)/$(RELEASE_BIN)" bench/cgi.sh
	WEBSERV_BIN="$(CURDIR)/$(RELEASE_BIN)" bench/proxy.sh
	WEBSERV_BIN="$(CURDIR)/$(RELEASE_BIN)" bench/ws.sh
	WEBSERV_BIN="$(CURDIR)/$(RELEASE_BIN)" bench/gzip.sh
	$(MAKE) --no-print-directory bench-config

# A long mixed load, watched for leaks (RSS, descriptors, children, temp
# files) and unexpected statuses: bench/soak.sh. SOAK_SECS=120 for a short one.
.PHONY: soak
soak: build-release
	WEBSERV_BIN="$(CURDIR)/$(RELEASE_BIN)" bench/soak.sh

# Parse + validate + build of a generated 10,000-location configuration.
bench-config:
	$(CARGO) bench --bench config_parse
