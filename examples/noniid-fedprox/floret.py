"""Names of floret's built-in, Rust-native apps.

floret never imports this file. It exists because the Python `flwr` CLI checks
that every component in `[tool.flwr.app.components]` names an attribute of a
module it can find in the app directory; with it, this app can also be
submitted with the Python CLI to a floret SuperLink.
"""

serverapp = "floret:serverapp"
logreg = "floret:logreg"
mlp = "floret:mlp"
