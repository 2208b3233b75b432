"""The memory query endpoint: FastAPI served by uvicorn in a thread of the memory actor.

    POST /ask               {"collection": "...", "question": "..."}  -> the answer from memory (200),
                            or {"status": "reading", "documents": N, "read": K} (202) while a
                            question asked for the first time reads the collection
    GET  /collections       the collections with a memory
    GET  /collections/NAME  how far NAME's memories are: documents read, each question's reads, last change
    GET  /healthz           200 while serving

Every error is JSON `{"error": "..."}` with its status: 404 unknown collection or path, 405 a
method a path does not take, 409 empty memory, 413 body larger than `memory.max_request_bytes`,
422 malformed body or question, 400 a malformed Content-Length; 500 for anything unexpected.
(No `from __future__ import annotations` here: FastAPI reads the request model's annotation.)
"""

import socket
import threading
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from actors.memory.metrics import QUERIES
from actors.memory.queries import Answers, QueryError


def build_app(actor: Answers, max_request_bytes: int) -> FastAPI:
    limit = actor.config.max_question_chars

    class Ask(BaseModel):
        collection: str = Field(min_length=1, max_length=512)
        question: str = Field(min_length=1, max_length=limit)

    app = FastAPI(title="Longtide memory", docs_url=None, redoc_url=None, openapi_url=None)

    def refuse(status: int, message: str) -> JSONResponse:
        QUERIES.labels(actor.name, "rejected").inc()
        return JSONResponse({"error": message}, status_code=status)

    @app.middleware("http")
    async def bounded_body(request: Request, call_next: Any) -> Any:
        declared = request.headers.get("content-length")
        if declared is not None and not declared.isdigit():
            return refuse(400, f"malformed Content-Length {declared[:20]!r}")
        if declared is not None and int(declared) > max_request_bytes:
            return refuse(413, f"request body larger than {max_request_bytes} bytes (memory.max_request_bytes)")
        if declared is None and request.method == "POST":  # chunked: read no more than the limit
            body = b""
            async for chunk in request.stream():
                body += chunk
                if len(body) > max_request_bytes:
                    return refuse(413, f"request body larger than {max_request_bytes} bytes (memory.max_request_bytes)")
            request._body = body  # what Request.body() caches, so the route reads it (Starlette's _CachedRequest)
        return await call_next(request)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """404 (no such path), 405 (a method the path does not take): the one error shape."""
        QUERIES.labels(actor.name, "rejected").inc()
        what = {404: "no such endpoint", 405: "method not allowed"}.get(exc.status_code, str(exc.detail).lower())
        paths = "POST /ask, GET /collections, GET /collections/NAME, GET /healthz"
        return JSONResponse(
            {"error": f"{what}: {request.method} {request.url.path} (this endpoint serves {paths})"},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def malformed(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        return refuse(422, f"malformed request: {problems}")

    @app.exception_handler(Exception)
    async def failed(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}"[:500]}, status_code=500)

    @app.post("/ask")
    def ask(body: Ask) -> JSONResponse:
        if not body.question.strip() or not body.collection.strip():
            return refuse(422, "malformed request: collection and question must not be blank")
        try:
            answer = actor.ask(body.collection, body.question)
        except QueryError as exc:
            QUERIES.labels(actor.name, exc.outcome).inc()
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        return JSONResponse(answer, status_code=202 if answer["status"] == "reading" else 200)

    @app.get("/collections")
    def collections() -> dict[str, list[str]]:
        return {"collections": actor.collections()}

    @app.get("/collections/{collection:path}")
    def progress(collection: str) -> JSONResponse:
        try:
            return JSONResponse(actor.progress(collection))
        except QueryError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"ok": True, "policy_version": actor.policy_version()}

    return app


class Server:
    """uvicorn on a socket bound before the thread starts (so `address` is known at once)."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        bound_host, bound_port = self.sock.getsockname()[:2]
        self.address = f"{bound_host}:{bound_port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


def serve(actor: Answers, host: str, port: int, max_request_bytes: int) -> "Server":
    return Server(build_app(actor, max_request_bytes), host, port)
