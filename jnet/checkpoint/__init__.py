"""Checkpoints: any pytree of arrays and scalars in one safetensors file, written atomically.

    jnet.checkpoint.save("ckpt.safetensors", {"params": params, "opt_state": opt_state})
    tree = jnet.checkpoint.load("ckpt.safetensors", like=template)

On disk a checkpoint is ONE safetensors file (no pickle, readable by any safetensors tool):

- every array leaf is a tensor named by its key path, ``"params/conv2d_0/w"``;
- the header metadata holds ``"jnet"``: a JSON description of the tree (containers and their
  keys, which leaves are arrays / Python scalars / None / PRNG keys, dtypes, shapes, the CRC-32
  of every tensor's bytes, the format version), ``"user"``: the caller's `metadata` as JSON,
  and ``"jnet_crc32"``: the CRC-32 of those two strings.

Dtypes safetensors knows (float32, bfloat16, int8, bool, ...) are stored natively; others
(complex128, int4, some float8 variants) as their raw little-endian bytes in a uint8 tensor,
with the real dtype in the description. Typed PRNG keys (`jax.random.key`) are stored as
`jax.random.key_data` plus the implementation name; legacy uint32 keys are ordinary arrays.

Format versions: 2 (this one) added the checksums; version 1 files (jnet 0.1, no checksums)
still load, without verification.

Guarantees:

- Atomic: `save` writes a temporary file in the target directory, fsyncs it, renames it onto
  `path` with `os.replace` and fsyncs the directory. A crash or ``kill -9`` at any moment
  leaves the previous checkpoint or the new one, never a half-written file.
- Failures keep the old file: a failed write (disk full, unwritable or missing directory,
  `path` a directory, a path under a regular file) raises `CheckpointError` naming the path
  and the fix, leaves any previous file at `path` untouched and removes its temporary file.
- No litter: temporary files are named ``.jnet-tmp-<pid>@<host>-<random>.tmp``. Each `save`
  removes those of writers that died (same host, pid no longer running) and any older than an
  hour, so a killed job's half-written files do not pile up.
- Files get the process umask's permissions, like any file the user creates.
- Integrity: `load` verifies the header's checksum and every tensor it reads (``verify=False``
  skips that); damage is a `CorruptCheckpointError` naming the tensor. Every malformed
  description (a bit flip, an edited header) is a `CheckpointError`, never a KeyError or a
  silently wrong tree.
- Readable as written: `save` checks every leaf and dict key before it writes anything, so
  arrays of strings, dates or Python objects and dict keys other than str / int are a
  `CheckpointError` naming their key path, never a file that cannot be loaded (or whose
  keys come back as strings).
- No silent narrowing: an int64 / float64 array saved with ``jax_enable_x64`` and loaded as a
  jax array without it is a `CheckpointError`, unless ``load(..., allow_downcast=True)``
  accepts 32 bits (integers that do not fit still raise).
- `check_writable(directory)` proves a directory can take checkpoints, and
  `check_space(directory, tree)` that its file system can hold one, before any training.
- `CheckpointManager`s sharing a directory (two jobs) never fail on each other's rotation.

The checksum is CRC-32 (`zlib.crc32`): on 100 MiB it runs at about 2.7 GB/s here, against
0.8 GB/s for `hashlib.blake2b` and 1.9 GB/s for SHA-1. It detects every error burst of up to
32 bits and any other damage (a torn or zeroed sector) with probability 1 - 2**-32; it is not a
defence against deliberate tampering. It costs 35-60 ms per 100 MiB on save and again on a
verified load (0.4-0.6 s per GiB; 8 float32 tensors on one shared CPU core), 10-30 % of a save
or a load from the page cache; `load(..., verify=False)` skips it.

`load(path, like=tree)` restores into `like`'s exact structure (NamedTuples, dataclasses, an
optimizer state) and checks every leaf's presence, kind, shape and dtype, reporting all
mismatches at once. `like` may hold `jax.ShapeDtypeStruct` leaves, e.g. from
``jax.eval_shape(model.init, key)``, so nothing has to be allocated before restoring.

`CheckpointManager` keeps a directory of numbered checkpoints with rotation (the last N plus
the best K by a monitored metric), for the `jnet.callbacks.Checkpoint` callback of
`jnet.fit`. Files in it named otherwise are ignored, and `restore()` never waits on a file that
cannot appear.

How others differ: PyTorch's `torch.save` pickles (unsafe to load from strangers, tied to class
paths); Flax/Orbax write a directory per checkpoint; Keras `.weights.h5` needs HDF5. safetensors
is one flat file that loads without executing code.

The package, one concern per module: `errors` (the error classes), `format` (the tree as a
JSON description plus tensors, checksums, the file's size), `writing` (atomic writes,
`save`, `check_writable`, `check_space`), `reading` (header and description validation,
leaves rebuilt), `restore` (`load`, `like` matching), `manager` (`CheckpointManager`).
"""

from jnet.checkpoint.errors import CheckpointError, CheckpointNotFoundError, CorruptCheckpointError
from jnet.checkpoint.errors import PathLike as PathLike
from jnet.checkpoint.format import FORMAT as FORMAT
from jnet.checkpoint.format import VERSION as VERSION
from jnet.checkpoint.manager import CheckpointManager
from jnet.checkpoint.reading import read_metadata
from jnet.checkpoint.restore import load
from jnet.checkpoint.writing import check_space, check_writable, save

__all__ = [
    "CheckpointError",
    "CheckpointManager",
    "CheckpointNotFoundError",
    "CorruptCheckpointError",
    "check_space",
    "check_writable",
    "load",
    "read_metadata",
    "save",
]
