"""The study server: the reader's page, the pack's images and the answer API, on the standard library.

Routes - every reader route carries that reader's link token, and no route lists readers or serves anyone's
answers, so one reader's token gives no access to another's:

    GET  /                         start page: on a loopback address a reader-id form, else "open your link"
    POST /api/readers              {"reader": id} -> {"link": "/r/<token>/"}; loopback addresses only
    GET  /r/<token>/               the study page (static/study.html)
    GET  /api/r/<token>/state      the reader's progress, calibration images and next trial
    POST /api/r/<token>/answer     {"trial", "side", "response_ms"} -> stored now?, the new state
    GET  /static/<asset>           the page's script and style
    GET  /img/<token>.png          an image of the pack

What the browser gets names no method: images are served under their random tokens, a trial is its two image
URLs and its number, and the method key stays in the database. An answer is committed to SQLite (WAL,
synchronous=FULL) before its reply is sent, so the page moves on only once the answer is on disk.
"""

import ipaddress
import json
import re
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources

from migros.reader_study.pack_format import CLASS_NAMES, Pack
from migros.reader_study.store import OutOfOrder, Progress, StoreError, StudyStore

READER_ROUTE = re.compile(r"/r/([^/]+)/")
API_ROUTE = re.compile(r"/api/r/([^/]+)/(state|answer)")
IMAGE_ROUTE = re.compile(r"/img/([^/]+)\.png")
STATIC_ASSETS = {"study.js": "text/javascript", "study.css": "text/css"}
MAX_BODY_BYTES = 4096
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    # the page loads nothing from elsewhere, and the token in its URL is never sent on as a referrer
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def asset(name: str) -> bytes:
    return (resources.files("migros.reader_study") / "static" / name).read_bytes()


class StudyServer(ThreadingHTTPServer):
    """Serves one pack's study on `store`; readers may register themselves by id only on a loopback address
    (one workstation the readers take turns at), else they need a link from `migros-reader-study add-reader`."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], pack: Pack, store: StudyStore):
        super().__init__(address, StudyRequestHandler)
        self.pack = pack
        self.store = store
        self.self_registration = is_loopback(address[0])
        self.pages = {
            "start": asset("start.html").replace(b"{registration}",
                                                 b"open" if self.self_registration else b"closed"),
            "study": asset("study.html"),
        }
        self.assets = {name: asset(name) for name in STATIC_ASSETS}

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    def state(self, reader: str, progress: Progress) -> dict:
        """What the page needs: no method, no item number, nothing of other readers."""
        trial = progress.next_trial
        return {
            "reader": reader,
            "question": self.pack.study["question"],
            "answered": progress.answered,
            "total": progress.total,
            "calibration": {name: [f"/img/{token}.png" for token in self.pack.study["calibration"][name]]
                            for name in CLASS_NAMES.values()},
            "trial": trial and {"trial": trial.trial, "left": f"/img/{trial.left_token}.png",
                                "right": f"/img/{trial.right_token}.png"},
        }


class StudyRequestHandler(BaseHTTPRequestHandler):
    server: StudyServer
    server_version = "reader-study"
    sys_version = ""

    def send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status: HTTPStatus, payload: dict) -> None:
        self.send(status, json.dumps(payload).encode(), "application/json")

    def send_error_json(self, status: HTTPStatus, message: str) -> None:
        self.send_json(status, {"error": message})

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/":
            return self.send(HTTPStatus.OK, self.server.pages["start"], "text/html; charset=utf-8")
        if match := READER_ROUTE.fullmatch(path):
            if self.server.store.reader_of(match[1]) is None:
                return self.send_error_json(HTTPStatus.NOT_FOUND, "no such reader link")
            return self.send(HTTPStatus.OK, self.server.pages["study"], "text/html; charset=utf-8")
        if (match := API_ROUTE.fullmatch(path)) and match[2] == "state":
            if (reader := self.server.store.reader_of(match[1])) is None:
                return self.send_error_json(HTTPStatus.NOT_FOUND, "no such reader link")
            return self.send_json(HTTPStatus.OK, self.server.state(reader, self.server.store.progress(reader)))
        if path.startswith("/static/") and (name := path.removeprefix("/static/")) in STATIC_ASSETS:
            return self.send(HTTPStatus.OK, self.server.assets[name], f"{STATIC_ASSETS[name]}; charset=utf-8")
        if (match := IMAGE_ROUTE.fullmatch(path)) and (image := self.server.pack.image_path(match[1])):
            return self.send(HTTPStatus.OK, image.read_bytes(), "image/png")
        self.send_error_json(HTTPStatus.NOT_FOUND, "not found")

    def json_body(self) -> dict | None:
        """The request's JSON object, or None after replying with the reason it was refused.

        Only same-origin JSON posts: a page of another site cannot send application/json without a CORS
        preflight, which this server never grants, and a browser's Origin header must name this server."""
        origin, host = self.headers.get("Origin"), self.headers.get("Host")
        if origin is not None and origin != f"http://{host}":
            self.send_error_json(HTTPStatus.FORBIDDEN, "cross-origin request")
            return None
        if self.headers.get_content_type() != "application/json":
            self.send_error_json(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send application/json")
            return None
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_BODY_BYTES:
            self.send_error_json(HTTPStatus.BAD_REQUEST, "missing or oversized body")
            return None
        try:
            body = json.loads(self.rfile.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            self.send_error_json(HTTPStatus.BAD_REQUEST, "the body must be a JSON object")
            return None
        return body

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/api/readers":
            return self.register()
        if (match := API_ROUTE.fullmatch(path)) and match[2] == "answer":
            return self.answer(match[1])
        self.send_error_json(HTTPStatus.NOT_FOUND, "not found")

    def register(self) -> None:
        if not self.server.self_registration:
            return self.send_error_json(HTTPStatus.FORBIDDEN, "open the link the study lead gave you")
        if (body := self.json_body()) is None:
            return
        try:
            token, _ = self.server.store.add_reader(str(body.get("reader", "")))
        except StoreError as error:
            return self.send_error_json(HTTPStatus.BAD_REQUEST, str(error))
        self.send_json(HTTPStatus.OK, {"link": f"/r/{token}/"})

    def answer(self, token: str) -> None:
        if (reader := self.server.store.reader_of(token)) is None:
            return self.send_error_json(HTTPStatus.NOT_FOUND, "no such reader link")
        if (body := self.json_body()) is None:
            return
        trial, side, response_ms = body.get("trial"), body.get("side"), body.get("response_ms")
        if not (is_integer(trial) and is_integer(response_ms)):
            return self.send_error_json(HTTPStatus.BAD_REQUEST, "trial and response_ms must be integers")
        try:
            stored, progress = self.server.store.record_answer(reader, trial, side, response_ms)
        except OutOfOrder as error:
            return self.send_error_json(HTTPStatus.CONFLICT, str(error))
        except StoreError as error:
            return self.send_error_json(HTTPStatus.BAD_REQUEST, str(error))
        self.send_json(HTTPStatus.OK, {"stored": stored, **self.server.state(reader, progress)})
