"""The official Mixpeek SDK (``mixpeek.AgentSessionsApi``) against the real gateway.

All 11 operations go through the SDK as a user would call them; its typed methods validate the
200 bodies strictly (a field the SDK rejects raises ``pydantic.ValidationError``), and the
``*_with_http_info`` variants show the status and content type. Error paths check that the
SDK raises the right exception class *and* parses ``e.data`` into an ``ErrorResponse``.
"""
