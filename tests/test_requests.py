"""How a request row becomes image bytes when its Content-Type is a URL-encoded form: TorchServe's
frontend has already split and URL-decoded such a body into text fields (tests/test_e2e_clients.py
shows it on a real server); only a base64 field can still be the image."""

import base64

import pytest

from afdserve.serving.requests import BadRequest, content_type, request_bytes

IMAGE = bytes(range(256)) * 3  # every byte value; base64 of it has '+' and '/'
ENCODED = base64.b64encode(IMAGE)
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.mark.parametrize("headers, expected", [
    ({"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"}, "application/x-www-form-urlencoded"),
    ({"content-type": "Image/JPEG"}, "image/jpeg"),
    ({"Accept": "*/*"}, ""),
    (None, ""),
])
def test_content_type(headers, expected):
    assert content_type(headers) == expected


@pytest.mark.parametrize("field", [
    ENCODED,                                            # sent percent-encoded (curl --data-urlencode)
    ENCODED.replace(b"+", b" "),                        # '+' not encoded: the frontend made it a space
    b"data:image/jpeg;base64," + ENCODED,               # a data URL, as FileReader makes them
    ENCODED.decode(),                                   # a text field
])
def test_form_with_a_base64_field_is_the_image(field):
    assert request_bytes({"image": field}, FORM) == IMAGE
    assert request_bytes({"b64": field, "other": b"x"}, {"content-type": "application/x-www-form-urlencoded"}) == IMAGE


@pytest.mark.parametrize("row", [{"\ufffd\ufffdJFIF": b"\x10\x00"}, {"body": IMAGE}, {}, b"raw"])
def test_a_file_sent_as_a_form_is_refused_with_the_fix(row):
    with pytest.raises(BadRequest) as refused:
        request_bytes(row, FORM)
    assert refused.value.status == 415
    assert "Content-Type: application/octet-stream" in str(refused.value)


def test_a_form_field_that_is_not_base64_is_refused():
    with pytest.raises(BadRequest, match="not valid base64.*Content-Type: application/octet-stream"):
        request_bytes({"image": b"not*base64"}, FORM)


def test_other_types_are_read_as_before():
    assert request_bytes({"body": IMAGE}, {"Content-Type": "image/jpeg"}) == IMAGE
    assert request_bytes({"body": IMAGE}) == IMAGE
