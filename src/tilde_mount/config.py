"""`FsConfig`: the knobs of the kernel-free filesystem (built by the CLI/daemon).

Memory budget (what bounds the daemon's RSS whatever the file sizes), with the defaults:

1. block cache in memory: ``memory_cache_bytes`` (48 MiB), an LRU by bytes;
2. range GETs in flight: at most ``fetch_concurrency`` (8) requests of at most
   ``max_request_bytes`` (2 MiB) each, so 16 MiB, about twice that while a body is
   cut into blocks; prefetch windows (1 MiB growing to ``prefetch_max``
   12 MiB per sequential reader) only *schedule* fetches through that same limiter and
   land in (1), so more readers do not mean more memory (four readers' windows fit in
   (1): a larger window would evict prefetched blocks before they are read);
3. uploads stream staged files from disk in ``upload_chunk`` (1 MiB) pieces:
   ``upload_concurrency`` x ``part_concurrency`` x 1 MiB = 16 MiB;
4. copying an existing object into staging before a write moves ``max_request_bytes``
   at a time per file;
5. small files waiting in batch uploads (upload.py): an open batch and two in flight, at
   most 8 MiB each, so 24 MiB.

So about 48 + 32 + 16 + 24 + small = ~120 MiB plus the interpreter (measured peak RSS:
126 MiB in the large benchmark, docs/performance.md workload H; the target is 200 MiB);
everything else (dirty data, the disk block cache) is on local disk under ``cache_dir``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


@dataclass(frozen=True)
class FsConfig:
    cache_dir: Path
    read_only: bool = False
    #: disk block cache bound (``--cache-size``); 0 disables the disk cache
    cache_size: int = 10 * GiB
    memory_cache_bytes: int = 48 * MiB
    #: cache granularity: a random 4 KiB read fetches one block, never more
    block_size: int = 128 * KiB
    max_request_bytes: int = 2 * MiB
    fetch_concurrency: int = 8
    prefetch_initial: int = 1 * MiB
    prefetch_max: int = 12 * MiB
    #: names per listing request (readdir pages)
    list_page_size: int = 1000
    #: how long attributes and listings are trusted (also the kernel's entry/attr timeout)
    attr_ttl: float = 30.0
    negative_ttl: float = 10.0
    upload_concurrency: int = 4
    part_concurrency: int = 4
    upload_chunk: int = 1 * MiB
    uid: int = field(default_factory=os.getuid)
    gid: int = field(default_factory=os.getgid)
    #: ``-o uid=/gid=`` given: every object shows as owned by ``uid``:``gid`` whatever
    #: owner it stores (else the stored owner shows, ``uid``/``gid`` where none is stored)
    map_owner: bool = False
    file_mode: int = 0o644
    dir_mode: int = 0o755
    #: ``--durable-close``: close(2) returns once the file is uploaded into the session
    durable_close: bool = False

    @property
    def staging_dir(self) -> Path:
        return self.cache_dir / "staging"

    @property
    def blocks_dir(self) -> Path:
        return self.cache_dir / "blocks"
