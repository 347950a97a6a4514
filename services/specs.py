"""Job specs as the service takes them: validated by the spec models (`services.api.schemas`),
stores checked against the configured roots, then checked against their stores by
`repalign.preflight`, so that a job that cannot run is refused at submit with nothing started.
The service chooses ``out`` (`services.crud.add_job`)."""

from fastapi import HTTPException, status

from repalign.preflight import JobCheckError, MissingStoreError, check_job
from services.security import StoreAccessError, resolve_store


def checked_spec(spec, settings):
    """``(kind, spec as a dict)`` of a submitted spec, with its store paths resolved.

    Refuses, with a message that names the field: 403 a store outside the roots, 404 a store
    that does not exist, 422 a spec that cannot run on its store (a glob matching nothing,
    k ≥ n, more memory than ``settings.job_memory``). Messages name stores as the spec does,
    never by their folders on the server.
    """
    roots = settings.store_roots
    try:
        update = {"store": str(resolve_store(spec.store, roots)), "out": None}
        if spec.kind == "alignment":
            update["measures"] = [
                m
                if m.against is None
                else m.model_copy(update={"against": str(resolve_store(m.against, roots))})
                for m in spec.measures
            ]
        resolved = spec.model_copy(update=update)
    except StoreAccessError as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from None
    try:
        check_job(spec, memory_bytes=settings.job_memory, locate=lambda s: resolve_store(s, roots))
    except MissingStoreError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except JobCheckError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    return resolved.kind, resolved.model_dump(mode="json", exclude_none=True)
