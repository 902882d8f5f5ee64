"""``afdserve demo``: a Gradio page that compresses a photo at a chosen JPEG quality and shows what
the served classifiers make of it, through TorchServe's inference API only.

``compare`` holds what the page does (no gradio: tested without a browser); ``app`` builds the
page and the command. Imports ``ops`` (the client, the server's config), ``data`` (the JPEG
encoder evaluation uses) and ``imaging`` (the server's decoder), never torch, models or serving
code. Gradio is the optional ``demo`` extra, imported only when the page is built.
"""
