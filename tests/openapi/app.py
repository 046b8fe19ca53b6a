"""A real API served by FastAPI for the OpenAPI tests; its generated spec is loaded back as tools."""

import secrets as pysecrets
from typing import Annotated, Any

import anyio
from fastapi import Depends, FastAPI, Form, Header, HTTPException, Query, Response, UploadFile
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlows
from fastapi.responses import StreamingResponse
from fastapi.security import (
    APIKeyCookie,
    APIKeyHeader,
    APIKeyQuery,
    HTTPAuthorizationCredentials,
    HTTPBasic,
    HTTPBasicCredentials,
    HTTPBearer,
    OAuth2,
)
from pydantic import BaseModel, Field

API_KEY = "key-3f9a1c"
BEARER = "bearer-77e2d0"
USER, PASSWORD = "ada", "pw-51c8e4"
CLIENT_ID, CLIENT_SECRET = "client-1", "secret-c0ffee"


class Pet(BaseModel):
    id: int = Field(default=0, json_schema_extra={"readOnly": True})  # the server assigns it
    name: str
    tag: str | None = None


class Renamed(BaseModel):
    id: int  # the same name as the path parameter: the clash rule calls it body_id
    name: str


class Node(BaseModel):
    """A recursive schema: a tree."""

    label: str
    children: list["Node"] = []


class State:
    def __init__(self) -> None:
        self.pets: dict[int, Pet] = {1: Pet(id=1, name="Rex", tag="dog")}
        self.calls: dict[str, int] = {}
        self.tokens: set[str] = set()
        self.token_requests = 0

    def count(self, key: str) -> int:
        self.calls[key] = self.calls.get(key, 0) + 1
        return self.calls[key]


def make_app() -> tuple[FastAPI, State]:
    app = FastAPI(title="Pets")
    state = State()
    key_header = APIKeyHeader(name="X-API-Key", scheme_name="key_header")
    key_query = APIKeyQuery(name="api_key", scheme_name="key_query")
    key_cookie = APIKeyCookie(name="session", scheme_name="key_cookie")
    bearer = HTTPBearer(scheme_name="bearer")
    basic = HTTPBasic(scheme_name="basic")
    oauth = OAuth2(
        flows=OAuthFlows(clientCredentials=OAuthFlowClientCredentials(tokenUrl="/token", scopes={})),
        scheme_name="oauth",
    )

    @app.get("/pets", operation_id="listPets", tags=["pets"])
    def list_pets(limit: int = 10, tags: Annotated[list[str] | None, Query()] = None) -> list[Pet]:
        pets = [p for p in state.pets.values() if not tags or p.tag in tags]
        return pets[:limit]

    @app.post("/pets", operation_id="createPet", tags=["pets"], status_code=201)
    def create_pet(pet: Pet) -> Pet:
        new = Pet(id=max(state.pets) + 1, name=pet.name, tag=pet.tag)
        state.pets[new.id] = new
        return new

    @app.get("/pets/{pet_id}", operation_id="getPet", tags=["pets"])
    def get_pet(pet_id: int) -> Pet:
        state.count(f"get {pet_id}")
        if pet_id not in state.pets:
            raise HTTPException(404, f"no pet {pet_id}")
        return state.pets[pet_id]

    @app.put("/pets/{id}", operation_id="renamePet", tags=["pets"])
    def rename(id: int, pet: Renamed) -> dict[str, Any]:
        state.pets[id] = Pet(id=id, name=pet.name)
        return {"path_id": id, "body_id": pet.id, "name": pet.name}

    @app.get("/flaky/{key}", operation_id="flakyGet", tags=["faults"])
    def flaky_get(key: str, fails: int = 1, retry_after: str | None = None) -> Response:
        n = state.count(f"flaky {key}")
        if n <= fails:
            headers = {"Retry-After": retry_after} if retry_after is not None else {}
            return Response("busy", status_code=503, headers=headers)
        return Response(f'{{"attempts": {n}}}', media_type="application/json")

    @app.post("/flaky/{key}", operation_id="flakyPost", tags=["faults"])
    def flaky_post(key: str) -> Response:
        state.count(f"flaky {key}")
        return Response("busy", status_code=503, headers={"Retry-After": "0"})

    @app.get("/teapot", operation_id="teapot", tags=["faults"])
    def teapot() -> Response:
        return Response("short and stout", status_code=418)

    @app.get("/trickle", operation_id="trickle", tags=["faults"])
    async def trickle() -> StreamingResponse:
        async def body() -> Any:
            for _ in range(50):
                yield b"x"
                await anyio.sleep(0.1)

        return StreamingResponse(body(), media_type="text/plain")

    @app.get("/text", operation_id="plainText", tags=["media"])
    def text() -> Response:
        return Response("hello there", media_type="text/plain")

    @app.get("/png", operation_id="image", tags=["media"])
    def png() -> Response:
        return Response(b"\x89PNG\r\n\x1a\n" + bytes(24), media_type="image/png")

    @app.get("/big", operation_id="big", tags=["media"])
    def big() -> Response:
        return Response("x" * 200_000, media_type="text/plain")

    @app.post("/login", operation_id="login", tags=["forms"])
    def login(username: Annotated[str, Form()], remember: Annotated[bool, Form()] = False) -> dict[str, Any]:
        return {"user": username, "remember": remember}

    @app.post("/upload", operation_id="upload", tags=["forms"])
    async def upload(file: UploadFile, note: Annotated[str, Form()] = "") -> dict[str, Any]:
        data = await file.read()
        return {"size": len(data), "note": note, "head": data[:5].decode(errors="replace")}

    @app.post("/tree/depth", operation_id="treeDepth", tags=["shapes"])
    def tree_depth(node: Node) -> int:
        def depth(n: Node) -> int:
            return 1 + max((depth(c) for c in n.children), default=0)

        return depth(node)

    @app.get("/echo-header", operation_id="echoHeader", tags=["shapes"])
    def echo_header(x_request_id: Annotated[str, Header()]) -> str:
        return x_request_id

    @app.get("/secure/key", operation_id="secureKey", tags=["auth"])
    def secure_key(key: Annotated[str, Depends(key_header)]) -> str:
        if key != API_KEY:
            raise HTTPException(401, "bad key")
        return "key ok"

    @app.get("/secure/query", operation_id="secureQuery", tags=["auth"])
    def secure_query(key: Annotated[str, Depends(key_query)]) -> str:
        if key != API_KEY:
            raise HTTPException(401, "bad key")
        return "query ok"

    @app.get("/secure/cookie", operation_id="secureCookie", tags=["auth"])
    def secure_cookie(key: Annotated[str, Depends(key_cookie)]) -> str:
        if key != API_KEY:
            raise HTTPException(401, "bad key")
        return "cookie ok"

    @app.get("/secure/bearer", operation_id="secureBearer", tags=["auth"])
    def secure_bearer(cred: Annotated[HTTPAuthorizationCredentials, Depends(bearer)]) -> str:
        if cred.credentials != BEARER:
            raise HTTPException(401, "bad token")
        return "bearer ok"

    @app.get("/secure/basic", operation_id="secureBasic", tags=["auth"])
    def secure_basic(cred: Annotated[HTTPBasicCredentials, Depends(basic)]) -> str:
        if (cred.username, cred.password) != (USER, PASSWORD):
            raise HTTPException(401, f"bad password for {cred.username}: {cred.password}")
        return f"basic ok {cred.username}"

    @app.post("/token", include_in_schema=False)
    def token(
        grant_type: Annotated[str, Form()],
        client_id: Annotated[str, Form()],
        client_secret: Annotated[str, Form()],
    ) -> dict[str, Any]:
        if grant_type != "client_credentials" or (client_id, client_secret) != (CLIENT_ID, CLIENT_SECRET):
            raise HTTPException(401, "bad client")
        state.token_requests += 1
        issued = pysecrets.token_hex(8)
        state.tokens.add(issued)
        return {"access_token": issued, "token_type": "bearer", "expires_in": 3600}

    @app.get("/secure/oauth", operation_id="secureOauth", tags=["auth"])
    def secure_oauth(authorization: Annotated[str, Depends(oauth)]) -> str:
        if authorization.removeprefix("Bearer ") not in state.tokens:
            raise HTTPException(401, "token expired")
        return "oauth ok"

    @app.get("/secure/bounce", operation_id="secureBounce", tags=["redirects"])
    def secure_bounce(to: str, key: Annotated[str, Depends(key_header)]) -> Response:
        return Response(status_code=307, headers={"Location": to})

    @app.get("/whoami", operation_id="whoami", tags=["redirects"])
    def whoami(x_api_key: Annotated[str | None, Header()] = None) -> dict[str, Any]:
        return {"key": x_api_key}

    @app.post("/admin/revoke", include_in_schema=False)
    def revoke() -> None:
        state.tokens.clear()

    return app, state
