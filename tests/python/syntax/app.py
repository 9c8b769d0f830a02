"""An app that does not parse: its build fails with the SyntaxError."""

def broken(:
    pass
