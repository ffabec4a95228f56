"""CDK stacks of the brokerage platform (see ../app.py)."""
