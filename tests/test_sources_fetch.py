"""Downloads: fast offline failure, and the success path against a local HTTP server."""

from __future__ import annotations

import functools
import http.server
import io
import os
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from diag.errors import DiagError
from diag.sources import fetch as fetch_mod
from diag.sources.fetch import fetch


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; /short.mat announces more bytes than it sends; logs every GET."""

    def do_GET(self):  # noqa: N802 - http.server API
        self.server.gets.append(self.path)
        if self.path.endswith("/118.mat"):
            self.send_response(200)
            self.send_header("Content-Length", "5000")
            self.end_headers()
            self.wfile.write(b"MATLAB 5.0 truncated")
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "site"
    root.mkdir()
    handler = functools.partial(_Handler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.gets = []
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}/", httpd
    httpd.shutdown()
    httpd.server_close()


def _mat_bytes(tmp_path: Path, rec: int) -> bytes:
    f = tmp_path / f"src_{rec}.mat"
    scipy.io.savemat(f, {f"X{rec:03d}_DE_time": np.ones((100, 1))})
    return f.read_bytes()


@pytest.mark.parametrize("base", ["http://127.0.0.1:9/", "http://diag-test-host.invalid/"])
def test_offline_fails_fast_with_one_line_message(tmp_path, monkeypatch, base):
    monkeypatch.setattr(fetch_mod, "CWRU_BASE_URL", base)
    t0 = time.monotonic()
    with pytest.raises(DiagError, match=r"cannot reach .* \(.*no internet\?\); download the files by hand into .*cwru/ from https://engineering.case.edu") as e:
        fetch("cwru", tmp_path / "cwru", records=[105], timeout=10.0, progress=False)
    assert time.monotonic() - t0 < 7.0
    assert "\n" not in str(e.value)
    assert not (tmp_path / "cwru").exists()  # issue 8: no empty --out folder left behind


def test_download_atomic_rename_and_skip_existing(tmp_path, monkeypatch, server):
    root, base, httpd = server
    payload = _mat_bytes(tmp_path, 105)
    (root / "105.mat").write_bytes(payload)
    (root / "97.mat").write_bytes(_mat_bytes(tmp_path, 97))
    monkeypatch.setattr(fetch_mod, "CWRU_BASE_URL", base)
    out = tmp_path / "data_raw" / "cwru"
    paths = fetch("cwru", out, records=[105, "97"], progress=False)
    assert paths == [out / "105.mat", out / "97.mat"]
    assert (out / "105.mat").read_bytes() == payload
    assert sorted(p.name for p in out.iterdir()) == ["105.mat", "97.mat"]  # no .part left
    # the reader reads what was fetched
    from diag.sources.cwru import read_cwru

    assert [r.meta["record"] for r in read_cwru(out)] == [97, 105]
    # second run: same size on the server -> skipped (file untouched)
    old = time.time() - 3600
    os.utime(out / "105.mat", (old, old))
    fetch("cwru", out, records=[105], progress=False)
    assert (out / "105.mat").stat().st_mtime == pytest.approx(old)
    # a local copy of the wrong size is replaced
    (out / "105.mat").write_bytes(b"MATLAB short")
    fetch("cwru", out, records=[105], progress=False)
    assert (out / "105.mat").read_bytes() == payload


def test_download_errors_leave_nothing_behind(tmp_path, monkeypatch, server):
    root, base, _ = server
    monkeypatch.setattr(fetch_mod, "CWRU_BASE_URL", base)
    out = tmp_path / "out"
    with pytest.raises(DiagError, match=r"106\.mat: the server answered 404"):
        fetch("cwru", out, records=[106], progress=False)
    with pytest.raises(DiagError, match=r"118\.mat: download (stopped after|interrupted)"):
        fetch("cwru", out, records=[118], progress=False)
    (root / "119.mat").write_bytes(b"<html>moved</html>")
    with pytest.raises(DiagError, match=r"119\.mat: the server sent something that is not a \.mat file"):
        fetch("cwru", out, records=[119], progress=False)
    assert not out.exists()  # nothing downloaded: not even the folder stays


def test_failed_fetch_keeps_a_folder_that_existed_and_what_it_holds(tmp_path, monkeypatch, server):
    root, base, _ = server
    monkeypatch.setattr(fetch_mod, "CWRU_BASE_URL", base)
    out = tmp_path / "mine"
    out.mkdir()
    with pytest.raises(DiagError, match=r"106\.mat: the server answered 404"):
        fetch("cwru", out, records=[106], progress=False)
    assert out.is_dir()  # the user's folder stays, empty or not
    (root / "105.mat").write_bytes(_mat_bytes(tmp_path, 105))
    with pytest.raises(DiagError, match=r"106\.mat: the server answered 404"):
        fetch("cwru", tmp_path / "new" / "cwru", records=[105, 106], progress=False)
    assert [p.name for p in (tmp_path / "new" / "cwru").iterdir()] == ["105.mat"]  # the complete file is kept


def test_paderborn_and_ottawa_plans(tmp_path, monkeypatch, server):
    root, base, _ = server
    (root / "KA01.rar").write_bytes(b"Rar!\x1a\x07\x00" + b"x" * 100)
    monkeypatch.setattr(fetch_mod, "PADERBORN_BASE_URL", base)
    paths = fetch("paderborn", tmp_path / "pu", records=["ka01"], progress=False)
    assert paths == [tmp_path / "pu" / "KA01.rar"]
    # Ottawa: one zip, extracted in place
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("1 Data collected from a healthy bearing/H-A-1.mat", _mat_bytes(tmp_path, 1))
    (root / "ottawa.zip").write_bytes(buf.getvalue())
    monkeypatch.setattr(fetch_mod, "OTTAWA_URL", base + "ottawa.zip")
    paths = fetch("ottawa", tmp_path / "ot", progress=False)
    assert paths == [tmp_path / "ot" / "1 Data collected from a healthy bearing" / "H-A-1.mat"]
    assert paths[0].is_file()


def test_bad_arguments(tmp_path):
    with pytest.raises(DiagError, match="unknown dataset 'mfpt'"):
        fetch("mfpt", tmp_path)
    with pytest.raises(DiagError, match="records: 999 is not in diag's CWRU table"):
        fetch("cwru", tmp_path, records=[999])
    with pytest.raises(DiagError, match="not Paderborn bearing codes"):
        fetch("paderborn", tmp_path, records=["X1"])
    with pytest.raises(DiagError, match="one archive"):
        fetch("ottawa", tmp_path, records=["H-A-1"])
    with pytest.raises(DiagError, match="timeout"):
        fetch("cwru", tmp_path, timeout=0)


def test_cli_fetch_offline_exits_2_and_leaves_no_out_folder(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from diag.cli import app

    monkeypatch.setattr(fetch_mod, "CWRU_BASE_URL", "http://127.0.0.1:9/")
    out = tmp_path / "data_raw" / "cwru"
    res = CliRunner().invoke(app, ["fetch", "cwru", "--out", str(out), "--records", "105", "--timeout", "2"])
    assert res.exit_code == 2 and "cannot reach 127.0.0.1" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "data_raw").exists()
