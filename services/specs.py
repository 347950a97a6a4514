"""Job specs as the service takes them: validated by `repalign.spec`, stores checked against
the configured roots, ``out`` chosen by the service."""

from fastapi import HTTPException, status

from repalign.spec import SpecError, parse_spec
from services.security import StoreAccessError, resolve_store

SERVICE_OUT = "(set by the service)"


def checked_spec(content, roots):
    """``(kind, spec as a dict)`` of a submitted spec: 422 if it is malformed, 403 if it reads
    a store outside the roots. Store paths come back resolved."""
    if not isinstance(content, dict):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "a job spec is a JSON object")
    try:
        spec = parse_spec({**content, "out": content.get("out", SERVICE_OUT)})
    except SpecError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    try:
        spec.store = str(resolve_store(spec.store, roots))
        for measure in getattr(spec, "measures", []):
            if measure.against is not None:
                against = str(resolve_store(measure.against, roots))
                spec.measures[spec.measures.index(measure)] = measure.model_copy(
                    update={"against": against}
                )
    except StoreAccessError as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from None
    return spec.kind, spec.model_dump(mode="json", exclude_none=True)
