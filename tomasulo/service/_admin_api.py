"""``/v1/admin``: tenants and their API keys (admin keys only).

Tenants named in the configuration file are the file's: the API shows them but refuses to
change or delete them (edit the file and restart). The ``default`` tenant cannot be deleted.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from ..exceptions import ConfigError
from ._config import DEFAULT_TENANT, TenantSpec
from ._deps import ERRORS, Caller, require_admin, require_json, tenant_out
from ._models import KeyCreate, KeyCreated, KeyList, KeyOut, TenantCreate, TenantList, TenantOut, TenantUpdate
from ._problems import PROBLEM_JSON, Problem, ProblemError
from ._store import Conflict, NotFound, Tenant

__all__ = ["router"]

_ADMIN_ERRORS = {
    **ERRORS,
    403: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": "Not an admin key"},
    409: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": "Conflict"},
}
router = APIRouter(prefix="/v1/admin", tags=["admin"], responses=_ADMIN_ERRORS)
AdminDep = Annotated[Caller, Depends(require_admin)]
TenantId = Annotated[str, Path(max_length=64, description="the tenant's id")]
KeyId = Annotated[str, Path(max_length=32, description="the key's id (the part after tmsk_)")]


def _tenant(admin: Caller, tenant_id: str) -> Tenant:
    try:
        return admin.state.db.tenant(tenant_id)
    except NotFound:
        raise ProblemError(404, "not-found", f"no tenant {tenant_id!r}") from None


def _not_from_config(tenant: Tenant, what: str) -> None:
    if tenant.source == "config":
        raise ProblemError(
            409,
            "conflict",
            f"tenant {tenant.id!r} comes from the configuration file, which wins on every start; "
            f"{what} it there and restart",
            title="Conflict",
        )


@router.get("/tenants", summary="Every tenant")
def list_tenants(admin: AdminDep) -> TenantList:
    return TenantList(tenants=[tenant_out(t) for t in admin.state.db.tenants()])


@router.post("/tenants", status_code=201, summary="Add a tenant", dependencies=[Depends(require_json)])
def create_tenant(body: TenantCreate, admin: AdminDep) -> TenantOut:
    spec = TenantSpec(name=body.name, tools=body.tools, models=body.models, limits=body.limits)
    try:
        tenant = admin.state.db.create_tenant(body.id, spec)
    except Conflict:
        raise ProblemError(409, "conflict", f"tenant {body.id!r} exists already", title="Conflict") from None
    return tenant_out(tenant)


@router.get("/tenants/{tenant_id}", summary="One tenant")
def get_tenant(tenant_id: TenantId, admin: AdminDep) -> TenantOut:
    return tenant_out(_tenant(admin, tenant_id))


@router.patch("/tenants/{tenant_id}", summary="Change a tenant", dependencies=[Depends(require_json)])
def update_tenant(tenant_id: TenantId, body: TenantUpdate, admin: AdminDep) -> TenantOut:
    _not_from_config(_tenant(admin, tenant_id), "change")
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    if body.limits is not None:
        changes["limits"] = body.limits
    if tenant_id == DEFAULT_TENANT and changes.get("disabled"):
        raise ProblemError(
            409, "conflict", "the default tenant holds the first admin key; it cannot be disabled"
        )
    try:
        tenant = admin.state.db.update_tenant(tenant_id, changes) if changes else _tenant(admin, tenant_id)
    except NotFound:
        raise ProblemError(404, "not-found", f"no tenant {tenant_id!r}") from None
    admin.state.forget_tenant(tenant_id)
    return tenant_out(tenant)


@router.delete("/tenants/{tenant_id}", status_code=204, summary="Delete a tenant, its keys and its runs")
def delete_tenant(tenant_id: TenantId, admin: AdminDep) -> Response:
    tenant = _tenant(admin, tenant_id)
    if tenant_id == DEFAULT_TENANT:
        raise ProblemError(409, "conflict", "the default tenant cannot be deleted", title="Conflict")
    _not_from_config(tenant, "remove")
    try:
        admin.state.db.delete_tenant(tenant_id)
    except NotFound:
        raise ProblemError(404, "not-found", f"no tenant {tenant_id!r}") from None
    admin.state.forget_tenant(tenant_id)
    return Response(status_code=204)


@router.get("/tenants/{tenant_id}/keys", summary="A tenant's keys (never their secrets)")
def list_keys(tenant_id: TenantId, admin: AdminDep) -> KeyList:
    _tenant(admin, tenant_id)
    return KeyList(keys=[KeyOut.model_validate(k.to_json()) for k in admin.state.db.keys(tenant_id)])


@router.post(
    "/tenants/{tenant_id}/keys",
    status_code=201,
    summary="Create a key; the response shows it once",
    dependencies=[Depends(require_json)],
)
def create_key(tenant_id: TenantId, body: KeyCreate, admin: AdminDep) -> KeyCreated:
    _tenant(admin, tenant_id)
    try:
        record, full = admin.state.db.create_key(tenant_id, body.role, body.name)
    except NotFound:
        raise ProblemError(404, "not-found", f"no tenant {tenant_id!r}") from None
    except ConfigError as exc:
        raise ProblemError(422, "invalid-role", str(exc), title="Invalid role") from None
    return KeyCreated(**record.to_json(), key=full)


@router.delete("/keys/{key_id}", summary="Revoke a key (it stays listed, with revoked_at)")
def revoke_key(key_id: KeyId, admin: AdminDep) -> KeyOut:
    try:
        record = admin.state.db.revoke_key(key_id)
    except NotFound:
        raise ProblemError(404, "not-found", f"no key {key_id!r}") from None
    admin.state.keys.forget(key_id=key_id)
    return KeyOut.model_validate(record.to_json())
