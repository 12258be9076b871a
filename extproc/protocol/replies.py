"""Builders for the ProcessingResponse messages Envoy expects, with the 1.40 gotchas baked in.

- Header values go in ``raw_value``: Envoy 1.40 sends ``value``-only mutations as empty headers.
- An ImmediateResponse always carries a status: without one Envoy answers 200.
- A body mutation that changes the length must fix ``content-length`` in the same reply.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from extproc.protocol.pb import ProcessingMode, ProcessingResponse, core, ext, http_status

Direction = str  # "request" or "response"


def header_mutation(
    set_headers: Mapping[str, str] | None = None, remove: Iterable[str] = ()
) -> ext.HeaderMutation:
    return ext.HeaderMutation(
        set_headers=[
            core.HeaderValueOption(header=core.HeaderValue(key=k, raw_value=v.encode()))
            for k, v in (set_headers or {}).items()
        ],
        remove_headers=list(remove),
    )


def headers_reply(
    direction: Direction,
    mode_override: ProcessingMode | None = None,
    mutation: ext.HeaderMutation | None = None,
) -> ProcessingResponse:
    common = ext.CommonResponse(header_mutation=mutation) if mutation else ext.CommonResponse()
    reply = ProcessingResponse(**{f"{direction}_headers": ext.HeadersResponse(response=common)})
    if mode_override is not None:
        reply.mode_override.CopyFrom(mode_override)
    return reply


def body_continue(direction: Direction) -> ProcessingResponse:
    return ProcessingResponse(**{f"{direction}_body": ext.BodyResponse()})


def body_replace(direction: Direction, body: bytes) -> ProcessingResponse:
    """Replace a BUFFERED body and set content-length to match (else Envoy answers 500)."""
    common = ext.CommonResponse(
        header_mutation=header_mutation({"content-length": str(len(body))}),
        body_mutation=ext.BodyMutation(body=body),
    )
    return ProcessingResponse(**{f"{direction}_body": ext.BodyResponse(response=common)})


def body_streamed(direction: Direction, body: bytes, end_of_stream: bool) -> ProcessingResponse:
    """The only body reply FULL_DUPLEX_STREAMED accepts, pass-through included."""
    chunk = ext.StreamedBodyResponse(body=body, end_of_stream=end_of_stream)
    common = ext.CommonResponse(body_mutation=ext.BodyMutation(streamed_response=chunk))
    return ProcessingResponse(**{f"{direction}_body": ext.BodyResponse(response=common)})


# The largest body piece of one streamed reply: a body of any length (a masked answer can
# outgrow every message limit) goes out as several messages, each far below gRPC's limits.
STREAMED_PIECE_BYTES = 1 << 20


def body_streamed_pieces(
    direction: Direction, body: bytes, end_of_stream: bool
) -> list[ProcessingResponse]:
    """``body`` as streamed replies of at most ``STREAMED_PIECE_BYTES`` each (FULL_DUPLEX_STREAMED
    accepts any number of them); only the last carries ``end_of_stream``."""
    if len(body) <= STREAMED_PIECE_BYTES:
        return [body_streamed(direction, body, end_of_stream)]
    starts = range(0, len(body), STREAMED_PIECE_BYTES)
    return [
        body_streamed(
            direction,
            body[start : start + STREAMED_PIECE_BYTES],
            end_of_stream and start + STREAMED_PIECE_BYTES >= len(body),
        )
        for start in starts
    ]


def trailers_continue(direction: Direction) -> ProcessingResponse:
    return ProcessingResponse(**{f"{direction}_trailers": ext.TrailersResponse()})


def immediate(status: int, body: bytes, content_type: str, details: str) -> ProcessingResponse:
    return ProcessingResponse(
        immediate_response=ext.ImmediateResponse(
            status=http_status.HttpStatus(code=status),
            headers=header_mutation({"content-type": content_type}),
            body=body,
            details=details,
        )
    )
