"""One module per scenario of issue 4; each measures one server kind and returns its figures."""
