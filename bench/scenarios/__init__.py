"""One module per scenario; each measures one server kind and returns its figures."""
