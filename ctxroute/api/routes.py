"""Routes for collections, documents, uploads, jobs and admin (tenants and keys)."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Query, Response, UploadFile
from fastapi.responses import JSONResponse

from ctxroute.api import models as M
from ctxroute.api.deps import Admin, DocId, JobId, KeyId, Name, Svc, Tenant, TenantName
from ctxroute.api.jobs import JobHandle, JobState
from ctxroute.api.jobqueue import RedisJobs
from ctxroute.api.uploads import spool
from ctxroute.errors import DocumentError, InputError, InputTooLarge

router = APIRouter()


def job_out(s: JobState) -> M.JobOut:
    return M.JobOut(
        id=s.id, collection=s.collection, status=s.status, stage=s.stage, progress=round(s.progress, 4),  # type: ignore[arg-type]
        files_total=s.files_total, files_done=s.files_done, documents_added=list(s.documents_added),
        errors=[M.FileErrorOut(file=e.file, message=e.message) for e in s.errors],
        created_at=s.created_at, finished_at=s.finished_at, collection_version=s.collection_version,
    )


# --- collections ---------------------------------------------------------------------
@router.post("/v1/collections", status_code=201, response_model=M.CollectionOut, tags=["collections"])
async def create_collection(body: M.CollectionCreate, svc: Svc, t: Tenant) -> M.CollectionOut:
    return await asyncio.to_thread(svc.backend.create_collection, t, body.name)


@router.get("/v1/collections", response_model=M.CollectionList, tags=["collections"])
async def list_collections(svc: Svc, t: Tenant) -> M.CollectionList:
    return M.CollectionList(collections=await asyncio.to_thread(svc.backend.list_collections, t))


@router.get("/v1/collections/{name}", response_model=M.CollectionOut, tags=["collections"])
async def get_collection(name: Name, svc: Svc, t: Tenant) -> M.CollectionOut:
    return await asyncio.to_thread(svc.backend.collection_info, t, name)


@router.delete("/v1/collections/{name}", status_code=204, tags=["collections"])
async def delete_collection(name: Name, svc: Svc, t: Tenant) -> Response:
    await asyncio.to_thread(svc.backend.delete_collection, t, name)
    return Response(status_code=204)


# --- documents -------------------------------------------------------------------------
@router.get("/v1/collections/{name}/documents", response_model=M.DocumentList, tags=["documents"])
async def list_documents(name: Name, svc: Svc, t: Tenant) -> M.DocumentList:
    return M.DocumentList(documents=await asyncio.to_thread(svc.backend.list_documents, t, name))


@router.get("/v1/collections/{name}/documents/{doc_id}", response_model=M.DocumentDetail, tags=["documents"])
async def get_document(name: Name, doc_id: DocId, svc: Svc, t: Tenant) -> M.DocumentDetail:
    return await asyncio.to_thread(svc.backend.document_info, t, name, doc_id)


@router.delete("/v1/collections/{name}/documents/{doc_id}", status_code=204, tags=["documents"])
async def delete_document(name: Name, doc_id: DocId, svc: Svc, t: Tenant) -> Response:
    await asyncio.to_thread(svc.backend.remove_document, t, name, doc_id)
    return Response(status_code=204)


@router.post("/v1/collections/{name}/documents", status_code=201, response_model=M.IngestOut, tags=["documents"])
async def add_documents(name: Name, body: M.DocumentsIn, svc: Svc, t: Tenant) -> M.IngestOut:
    svc.backend.check_exists(t, name)
    docs = [svc.backend.document_from_in(d) for d in body.documents]
    return await asyncio.to_thread(svc.backend.add_documents, t, name, docs, [])


@router.post(
    "/v1/collections/{name}/files", status_code=201, response_model=M.IngestOut, tags=["documents"],
    responses={202: {"model": M.JobOut, "description": "large upload: ingested as a background job"}},
)
async def upload_files(
    name: Name, svc: Svc, t: Tenant,
    files: Annotated[list[UploadFile], File(min_length=1, description="txt, md, html, pdf or jsonl files")],
    background: Annotated[bool | None, Query(description="force (true) or forbid (false) a background job")] = None,
) -> Any:
    svc.backend.check_exists(t, name)
    if not files:
        raise InputError("no files in the upload; send one or more 'files' parts")
    total = sum(f.size or 0 for f in files)
    if total > svc.settings.max_upload_bytes:
        raise InputTooLarge(
            f"upload of {total} bytes exceeds the {svc.settings.max_upload_bytes}-byte limit "
            "(CTXROUTE_MAX_UPLOAD_MB); split it into several requests"
        )
    as_job = background if background is not None else total > svc.settings.background_upload_bytes
    if not as_job:
        parsed = await svc.parser.parse([(f.filename or "upload.txt", await f.read()) for f in files])
        if not parsed.documents:
            first = parsed.errors[0] if parsed.errors else M.FileErrorOut(file="upload", message="no documents")
            if parsed.too_large:
                big = next(e for e in parsed.errors if "CTXROUTE_" in e.message)
                raise InputTooLarge(f"{big.file}: {big.message}")
            raise DocumentError(first.file, first.message)
        return await asyncio.to_thread(svc.backend.add_documents, t, name, parsed.documents, parsed.errors)
    if isinstance(svc.jobs, RedisJobs):  # the Redis queue: spooled into Redis, any worker ingests it
        state = await svc.jobs.submit_upload(t, name, files)
        return JSONResponse(job_out(state).model_dump(), status_code=202, headers={"Location": f"/v1/jobs/{state.id}"})
    job_id = svc.jobs.new_id()
    spool_dir = svc.jobs.spool_dir(t, job_id)
    spool_dir.mkdir(parents=True, exist_ok=True)
    saved: list[tuple[str, Path]] = []
    for i, f in enumerate(files):
        fname = Path(f.filename or f"upload{i}.txt").name or f"upload{i}.txt"
        path = spool_dir / f"{i:05d}"
        await asyncio.to_thread(spool, f.file, path)  # chunked copy: the upload is never whole in memory
        saved.append((fname, path))
    backend, limits = svc.backend, svc.parser.limits

    def work(h: JobHandle) -> None:
        backend.ingest_job(t, name, h, limits)

    state = svc.jobs.submit(t, name, job_id, saved, work)
    return JSONResponse(job_out(state).model_dump(), status_code=202, headers={"Location": f"/v1/jobs/{job_id}"})


# --- jobs ------------------------------------------------------------------------------
@router.get("/v1/jobs", response_model=M.JobList, tags=["jobs"])
async def list_jobs(svc: Svc, t: Tenant) -> M.JobList:
    return M.JobList(jobs=[job_out(s) for s in await asyncio.to_thread(svc.jobs.list, t)])


@router.get("/v1/jobs/{job_id}", response_model=M.JobOut, tags=["jobs"])
async def get_job(job_id: JobId, svc: Svc, t: Tenant) -> M.JobOut:
    return job_out(await asyncio.to_thread(svc.jobs.get, t, job_id))


# --- admin -----------------------------------------------------------------------------
@router.post("/v1/admin/tenants", status_code=201, response_model=M.TenantOut, tags=["admin"])
async def create_tenant(body: M.TenantCreate, svc: Svc, _: Admin) -> M.TenantOut:
    info = svc.tenants.create_tenant(body.name)
    return M.TenantOut(name=info.name, created_at=info.created_at, keys=info.n_keys)


@router.get("/v1/admin/tenants", response_model=M.TenantList, tags=["admin"])
async def list_tenants(svc: Svc, _: Admin) -> M.TenantList:
    return M.TenantList(tenants=[M.TenantOut(name=i.name, created_at=i.created_at, keys=i.n_keys)
                                 for i in svc.tenants.tenants()])


@router.delete("/v1/admin/tenants/{tenant_name}", status_code=204, tags=["admin"])
async def delete_tenant(
    tenant_name: TenantName, svc: Svc, _: Admin,
    purge: Annotated[bool, Query(description="also delete the tenant's collections and jobs")] = False,
) -> Response:
    svc.tenants.delete_tenant(tenant_name)
    if purge:
        await asyncio.to_thread(svc.backend.purge_tenant, tenant_name)
        if isinstance(svc.jobs, RedisJobs):
            await asyncio.to_thread(svc.jobs.purge, tenant_name)
    return Response(status_code=204)


@router.post("/v1/admin/tenants/{tenant_name}/keys", status_code=201, response_model=M.KeyCreated, tags=["admin"])
async def create_key(tenant_name: TenantName, body: M.KeyCreate, svc: Svc, _: Admin) -> M.KeyCreated:
    new = svc.tenants.create_key(tenant_name, body.label)
    i = new.info
    return M.KeyCreated(key=new.key, key_id=i.key_id, tenant=i.tenant, created_at=i.created_at, label=i.label)


@router.get("/v1/admin/tenants/{tenant_name}/keys", response_model=M.KeyList, tags=["admin"])
async def list_keys(tenant_name: TenantName, svc: Svc, _: Admin) -> M.KeyList:
    return M.KeyList(keys=[M.KeyOut(key_id=k.key_id, tenant=k.tenant, created_at=k.created_at, label=k.label)
                           for k in svc.tenants.keys(tenant_name)])


@router.delete("/v1/admin/keys/{key_id}", status_code=204, tags=["admin"])
async def revoke_key(key_id: KeyId, svc: Svc, _: Admin) -> Response:
    svc.tenants.revoke_key(key_id)
    return Response(status_code=204)
