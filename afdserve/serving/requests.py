"""What a request is and what it is answered with, for every service: the image bytes of one
TorchServe request row (raw body, form field or JSON base64), the refusal of a bad one
(``BadRequest``, beside ``ImageDecodeError`` for bodies that are no image), and the ``Reply``
each request gets."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

# Keys under which a JSON body may carry a base64-encoded image.
JSON_IMAGE_KEYS = ("image", "data", "b64")
JSON_CONTENT_TYPE = "application/json"
# What curl --data-binary and urllib send when not told otherwise. TorchServe's frontend URL-decodes
# such a body into text fields before any handler runs (an image's bytes are lost or, almost
# always, refused with 500 "Bad string"), so only a base64 field in it can still be an image.
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
SEND_BYTES = ("send the image file's bytes with Content-Type: application/octet-stream "
              "(or image/jpeg, image/png, image/webp)")


class BadRequest(ValueError):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class Reply:
    """One request's answer: status, body bytes and their content type, and the JPEG quality of
    the request's file (None: PNG/WebP or a refused request), which the metrics count by."""

    status: int
    body: bytes
    content_type: str = JSON_CONTENT_TYPE
    jpeg_quality: int | None = None

    @classmethod
    def of_json(cls, status: int, payload: dict, jpeg_quality: int | None = None) -> "Reply":
        return cls(status, json.dumps(payload, separators=(",", ":")).encode(), JSON_CONTENT_TYPE, jpeg_quality)

    @classmethod
    def error(cls, status: int, message: str) -> "Reply":
        return cls.of_json(status, {"error": message})

    def json(self):
        """The body parsed, for a JSON reply."""
        return json.loads(self.body)

    def wire(self) -> bytes | str:
        """What the handler hands TorchServe: JSON as text (KServe's envelope wraps text answers
        in its own JSON), images as bytes."""
        return self.body.decode() if self.content_type == JSON_CONTENT_TYPE else self.body


def content_type(headers: dict | None) -> str:
    """The request's media type, lower case, without parameters ("" when none was sent)."""
    value = next((v for k, v in (headers or {}).items() if str(k).lower() == "content-type"), "")
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("latin-1")
    return str(value).split(";", 1)[0].strip().lower()


def request_bytes(row, headers: dict | None = None) -> bytes:
    """The image bytes of one TorchServe request row (raw body, form field or JSON base64);
    ``headers`` (the request's) tell a URL-encoded form apart."""
    if content_type(headers) == FORM_CONTENT_TYPE:
        return _form_image(row)
    value = row
    if isinstance(row, dict):
        # Raw bodies arrive as "body" (or "data"); a multipart form field under its own name.
        value = row.get("data") if row.get("data") is not None else row.get("body")
        if value is None:
            # Beside small option fields (the restorer's "format", "quality"), the file is the largest.
            value = max((v for v in row.values() if isinstance(v, (bytes, bytearray))), key=len, default=None)
        if value is None and any(isinstance(v, str) and len(v) > 8 for v in row.values()):
            # A form part sent as text/plain arrives decoded: say it is text, not "empty".
            raise BadRequest("the uploaded file is text, not an image: send the image file's bytes")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, dict):  # a JSON body TorchServe already parsed
        encoded = next((value[k] for k in JSON_IMAGE_KEYS if isinstance(value.get(k), str)), None)
        if encoded is None:
            raise BadRequest(f"JSON body must carry a base64-encoded image under one of {list(JSON_IMAGE_KEYS)}")
        if encoded.startswith("data:") and ";base64," in encoded[:100]:
            encoded = encoded.split(",", 1)[1]  # a data URL, as browsers make them
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("the JSON image field is not valid base64") from None
    if isinstance(value, str):
        # KServe's v1 envelope hands each instance's "data" over as the base64 text itself.
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("the body is text, not an image: send the image file's bytes") from None
    if value is None:
        raise BadRequest("empty request body")
    raise BadRequest("unrecognised request body")


def _form_image(row) -> bytes:
    """The image of a URL-encoded form: a base64 field named like the JSON keys. Anything else
    was a file's bytes sent with the form type, which the frontend has already mangled."""
    fields = row if isinstance(row, dict) else {}
    encoded = next((fields[k] for k in JSON_IMAGE_KEYS if isinstance(fields.get(k), (bytes, bytearray, str))
                    and fields[k]), None)
    if encoded is None:
        raise BadRequest(f"the body was sent as a form (Content-Type: {FORM_CONTENT_TYPE}), which the server "
                         f"decodes as text: {SEND_BYTES}; curl: -T photo.jpg or --data-binary @photo.jpg "
                         "-H 'Content-Type: application/octet-stream'", status=415)
    if isinstance(encoded, (bytes, bytearray)):
        encoded = bytes(encoded).decode("latin-1")
    # A '+' the client did not percent-encode arrives as a space; base64 has no spaces of its own.
    encoded = encoded.strip().replace(" ", "+")
    if encoded.startswith("data:") and ";base64," in encoded[:100]:
        encoded = encoded.split(",", 1)[1]
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"the form field is not valid base64: {SEND_BYTES}") from None
