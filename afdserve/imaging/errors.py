"""The one error for a request body that cannot be turned into an image (or costs too much to)."""


class ImageDecodeError(ValueError):
    """Raised for any body we cannot turn into an image. `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status
