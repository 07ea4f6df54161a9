# Benchmarks (issue 8): `make bench` starts its own Kafka, QuestDB and services on ports
# +8000 (GOSTREAM_BENCH_PORT_OFFSET), runs P1..P6, prints the numbers, writes bench/results/<stamp>.json and the
# table in BENCHMARKS.md. Included by the main Makefile, which defines PY and apt-ensure.
#
#   make bench                      everything (P1 with N=2,000,000 trades)
#   make bench N=200000             a quicker P1
#   make bench ONLY=p1,p3           some of p1 cpu p2 p3 p4 p5 p6 p7 p8 p9 p10
#   make bench ONLY=cpu             CPU per trade per service at 1,000 and 10,000 trades/s
#   GOSTREAM_BENCH_BASELINE=/tmp/wt/src make bench ONLY=cpu   ... against another tree's code, in pairs
#   make bench RATES=2000,5000 DURATION=30   P2 steps (trades/s) and seconds per step
#   make bench ONLY=p2 PER_PUSH=10  P2 with 10 trades per WebSocket push (OKX trades-all: 1)
#   make bench P4_ROWS=1000000      a smaller P4 table
#   make bench ONLY=p9 P9_ROWS=1000000   the completeness audit over a smaller store
#   make bench ONLY=p10 P10_PER_DAY=550000   bytes per trade on disk (QuestDB sizing)
#   make bench ONLY=p1 GOSTREAM_QUESTDB_CONNECTOR_DIR=<dir>   P1 with the official QuestDB Kafka
#                                   connector beside ours; <dir> holds its jars, built from its public
#                                   source outside this repository (BENCHMARKS.md says how); without
#                                   it P1 says "not measured"
#   make bench ONLY=p2cf RATES=1000,2000,5000   cryptofeed's OKX feed + Kafka backend beside our
#                                   producer, exchange -> Kafka, same steps (its own venv in .cache/)

N ?= 2000000
ONLY ?= p1,cpu,p2,p2cf,p3,p4,p5,p6,p7,p8,p9,p10
RATES ?= 2000,5000,10000,20000,50000
DURATION ?= 60
PER_PUSH ?= 1
P4_ROWS ?= 10000000
P9_ROWS ?= 10000000
P10_PER_DAY ?= 1000000

.PHONY: bench bench-deps

bench-deps: ## install wrk (P4's load generator) with apt-get, once
	$(call apt-ensure,wrk,--no-install-recommends)

bench: deps venv jars frontend-assets bench-deps ## run the benchmarks (N=, ONLY=, RATES=, DURATION=, PER_PUSH=, P4_ROWS=, P9_ROWS=, P10_PER_DAY=)
	$(PY) -m bench --n $(N) --only $(ONLY) --rates $(RATES) --duration $(DURATION) --per-push $(PER_PUSH) --p4-rows $(P4_ROWS) --p9-rows $(P9_ROWS) --p10-per-day $(P10_PER_DAY)
