# Roost — two entry points: `make demo` and `make test`. Benchmarks: `make bench-<area>`.
SHELL := /bin/bash
# The default target is the demo.
.PHONY: demo test deps build release clean

demo:
	@ci/demo.sh

test:
	@ci/test.sh

deps:
	@ci/deps.sh

build:
	cargo build --workspace

release:
	cargo build --release -p roost

clean:
	cargo clean

.PHONY: bench-rt
# Real-time placement vs a noisy neighbour, vs no placement, vs the idle floor and cyclictest.
bench-rt:
	@ci/bench-rt.sh

.PHONY: bench-container
# The same image 20 times through Roost (API create -> exit) and `ctr run --rm`, interleaved.
bench-container:
	@ci/bench-container.sh

.PHONY: bench-vmm
# The hello guest 20 times through `roost vmm` and QEMU microvm, interleaved; monitor RSS overhead;
# virtio-blk 4 KiB ops/s and sequential MiB/s against QEMU microvm on the same guest.
bench-vmm:
	@ci/bench-vmm.sh

.PHONY: bench-api
# 1,000 mock workloads through the daemon's API: create->running p99 against a floor
# measured in the same run (fdatasync'd write + posix_spawn), and RSS.
bench-api:
	@ci/bench-api.sh

.PHONY: bench-central
# A 10-workload set to 3 hosts through central vs straight to each host's API, 20 rounds interleaved.
bench-central:
	@ci/bench-central.sh

.PHONY: bench-fleet
# 1,000 / 5,000 / 10,000 simulated hosts on one central: CPU, RSS, audit, deploy, rollout, offline.
bench-fleet:
	@ci/bench-fleet.sh

.PHONY: bench-rollout
# A set rolled by a strategy to 100 simulated subclouds (max-parallel 10, 1 s apply) vs the ideal.
bench-rollout:
	@ci/bench-rollout.sh

.PHONY: fuzz-vmm
# The devices' queue handling and the MMIO transport fed 10^6 arbitrary inputs each
# (in process, release build); FUZZ_CASES=N to change the count.
fuzz-vmm:
	FUZZ_CASES=$${FUZZ_CASES:-1000000} cargo test --release -p roost-vmm --test fuzz_queues -- --nocapture
