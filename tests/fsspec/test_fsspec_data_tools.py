"""Data tools on ``tilde://`` URLs against a real tilde-server: pandas (Parquet, CSV),
pyarrow datasets, DuckDB, polars and dask. None of them imports tilde: fsspec finds the
filesystem through the ``fsspec.specs`` entry point."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import fsspec
from conftest import ServerHandle, new_repo


@pytest.fixture(scope="module")
def so(server: ServerHandle) -> dict[str, Any]:
    """storage_options, as a user passes them to pandas, polars or dask."""
    return {"api_key": server.api_key, "endpoint_url": server.endpoint}


@pytest.fixture(scope="module")
def fs(so: dict[str, Any]) -> Any:
    return fsspec.filesystem("tilde", **so)


@pytest.fixture(scope="module")
def root(server: ServerHandle) -> str:
    r = new_repo(server)
    return f"{r.org}/{r.repo}"


@pytest.fixture(scope="module")
def parts(fs: Any, root: str) -> str:
    """Three Parquet files under one directory, written in one transaction."""
    with fs.transaction:
        for i in range(3):
            table = pa.table({"part": [i] * 10, "x": list(range(i * 10, i * 10 + 10))})
            with fs.open(f"{root}/parts/p{i}.parquet", "wb") as f:
                pq.write_table(table, f)
    return f"{root}/parts"


def test_entry_point_resolves_without_importing_tilde() -> None:
    cls = fsspec.get_filesystem_class("tilde")
    assert (cls.__module__, cls.__name__) == ("tilde.fsspec", "TildeFileSystem")


def test_pandas_parquet_and_csv(so: dict[str, Any], root: str) -> None:
    df = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    df.to_parquet(f"tilde://{root}/pd/t.parquet", storage_options=so)
    back = pd.read_parquet(f"tilde://{root}/pd/t.parquet", storage_options=so)
    pd.testing.assert_frame_equal(back, df)
    df.to_csv(f"tilde://{root}/pd/t.csv", index=False, storage_options=so)
    back = pd.read_csv(f"tilde://{root}/pd/t.csv", storage_options=so)
    pd.testing.assert_frame_equal(back, df)


def test_pyarrow_dataset_over_a_directory(fs: Any, parts: str) -> None:
    table = ds.dataset(parts, filesystem=fs, format="parquet").to_table()
    assert table.num_rows == 30
    assert sorted(table.column("x").to_pylist()) == list(range(30))


def test_duckdb_reads_through_the_registered_filesystem(fs: Any, parts: str) -> None:
    import duckdb

    con = duckdb.connect()
    con.register_filesystem(fs)
    got = con.sql(f"SELECT count(*), sum(x) FROM read_parquet('tilde://{parts}/*.parquet')"
                  ).fetchall()
    assert got == [(30, sum(range(30)))]


def test_polars(fs: Any, so: dict[str, Any], parts: str) -> None:
    import polars as pl

    df = pl.from_arrow(pq.read_table(f"{parts}/p1.parquet", filesystem=fs))
    assert isinstance(df, pl.DataFrame)
    assert df["x"].to_list() == list(range(10, 20))
    # polars' own readers do not go through fsspec for unknown schemes: hand it a file
    with fsspec.open(f"tilde://{parts}/p2.parquet", **so) as f:
        direct = pl.read_parquet(f)
    assert direct["x"].to_list() == list(range(20, 30))


def test_dask_partitions(so: dict[str, Any], parts: str) -> None:
    import dask.dataframe as dd

    ddf = dd.read_parquet(f"tilde://{parts}", storage_options=so)
    assert ddf.npartitions == 3
    total = ddf["x"].sum().compute(scheduler="threads")
    assert total == sum(range(30))
