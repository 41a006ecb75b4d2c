"""Start a multi-process jnet/JAX job: N processes on this machine, or this host's share of a
job spread over several hosts.

    # 2 processes x 2 virtual CPU devices on this machine, training the built-in demo model:
    python scripts/launch.py -n 2 --devices-per-process 2

    # any script that calls jnet.distributed.initialize() first:
    python scripts/launch.py -n 4 -- python my_train.py --epochs 3

    # two hosts, 2 processes each: the coordinator is process 0's host (reachable by all)
    host0$ python scripts/launch.py -n 4 --local 2 --first-id 0 --coordinator 10.0.0.1:7777 -- ...
    host1$ python scripts/launch.py -n 4 --local 2 --first-id 2 --coordinator 10.0.0.1:7777 -- ...

Each child gets ``JNET_COORDINATOR``, ``JNET_NUM_PROCESSES``, ``JNET_PROCESS_ID`` (global id)
and, on CPU, ``JNET_LOCAL_DEVICES``; `jnet.distributed.initialize()` reads them and calls
`jax.distributed.initialize`. Output lines are prefixed with ``[process id]``. If one process
fails or ``--timeout`` passes, the others are killed (a collective would wait forever for the
missing peer) and the launcher exits non-zero.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time

DEMO = "demo"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository: jnet/


def free_port() -> int:
    """A TCP port free on the loopback interface now (the coordinator binds it shortly)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _relay(pid: int, stream, out) -> None:
    for line in iter(stream.readline, ""):
        out.write(f"[{pid}] {line}")
        out.flush()


def launch(command: list[str], num_processes: int, *, local: int | None = None,
           first_id: int = 0, coordinator: str | None = None,
           devices_per_process: int | None = None, timeout: float | None = None) -> int:
    """Run `command` as processes ``first_id .. first_id + local - 1`` of a job of
    `num_processes`; return 0 when all succeed, else the first failing exit code (124 on
    timeout)."""
    local = num_processes if local is None else local
    if not 1 <= local <= num_processes - first_id:
        raise SystemExit(f"launch.py: --local {local} with --first-id {first_id} does not fit a "
                         f"job of {num_processes} processes.")
    coordinator = coordinator or f"127.0.0.1:{free_port()}"
    procs, relays = [], []
    for i in range(first_id, first_id + local):
        env = dict(os.environ, JNET_COORDINATOR=coordinator, JNET_NUM_PROCESSES=str(num_processes),
                   JNET_PROCESS_ID=str(i), PYTHONUNBUFFERED="1",
                   PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
        if devices_per_process:
            env["JNET_LOCAL_DEVICES"] = str(devices_per_process)
        # start_new_session: a failure kills each child's whole process group, nothing else
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        relay = threading.Thread(target=_relay, args=(i, proc.stdout, sys.stdout), daemon=True)
        relay.start()
        procs.append(proc)
        relays.append(relay)
    deadline = None if timeout is None else time.monotonic() + timeout
    code = 0
    try:
        while True:
            codes = [p.poll() for p in procs]  # poll every one: any() would stop at the first
            if None not in codes:
                break
            failed = [c for c in codes if c not in (None, 0)]
            if failed or (deadline is not None and time.monotonic() > deadline):
                code = failed[0] if failed else 124
                reason = f"a process exited with {code}" if failed else f"timeout ({timeout} s)"
                print(f"launch.py: {reason}; stopping the others.", file=sys.stderr)
                break
            time.sleep(0.1)
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, 9)
            p.wait()
        for relay in relays:  # pass on what the processes printed last (their tracebacks)
            relay.join(timeout=5)
    return code or next((p.returncode for p in procs if p.returncode), 0)


def demo() -> None:
    """Each process: join the job, then train an MLP on a synthetic task with data
    parallelism, feeding only this process's share of every batch."""
    from jnet import distributed as dist

    dist.initialize()
    import jax
    import numpy as np

    import jnet
    from jnet import layers as L

    pid, count = jax.process_index(), jax.process_count()
    plan = dist.data_parallel()
    rng = np.random.default_rng(0)  # same data everywhere; each process then takes its share
    x = rng.normal(size=(2048, 16)).astype(np.float32)
    y = (x[:, :8].sum(1) > x[:, 8:].sum(1)).astype(np.int32)
    model = L.serial(L.Input((16,)), L.Dense(64), L.ReLU(), L.BatchNorm(), L.Dense(2),
                     L.ClassificationOutput())
    opt = jnet.optim.adam(3e-3)
    _, params, state = model.init(jax.random.key(0))
    step = dist.shard_train_step(jnet.make_train_step(model, opt), plan)
    params, state, opt_state = dist.place((params, state, opt.init(params)), plan)
    batch_size = 64 * plan.size
    for s in range(300):
        rows = np.arange(s * batch_size, (s + 1) * batch_size) % len(x)
        mine = np.array_split(rows, count)[pid]
        batch = dist.shard_batch((x[mine], y[mine]), plan)
        params, state, opt_state, logs = step(params, state, opt_state, batch,
                                              jax.random.key(s))
        if s % 100 == 99 and pid == 0:
            print(f"step {s + 1}: loss {float(logs['loss']):.4f} on {len(jax.devices())} "
                  f"devices in {count} processes")
    checksum = float(sum(np.abs(a).sum() for a in jax.tree.leaves(dist.gather(params))))
    print(f"process {pid}: parameter checksum {checksum:.6f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--num-processes", type=int, default=2,
                        help="processes in the whole job (all hosts)")
    parser.add_argument("--local", type=int, default=None,
                        help="processes to start on this host (default: all)")
    parser.add_argument("--first-id", type=int, default=0,
                        help="global id of this host's first process")
    parser.add_argument("--coordinator", default=None,
                        help="host:port of process 0 (default: 127.0.0.1 and a free port)")
    parser.add_argument("--devices-per-process", type=int, default=None,
                        help="virtual CPU devices per process (CPU backend)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds before killing")
    parser.add_argument("command", nargs=argparse.REMAINDER,
                        help="-- command to run in each process (default: the demo)")
    args = parser.parse_args()
    if args.command == [DEMO]:
        demo()
        return
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    command = command or [sys.executable, os.path.abspath(__file__), DEMO]
    sys.exit(launch(command, args.num_processes, local=args.local, first_id=args.first_id,
                    coordinator=args.coordinator, devices_per_process=args.devices_per_process,
                    timeout=args.timeout))


if __name__ == "__main__":
    main()
