"""Image references and policy.json scope precedence, shared by the renderer and the audit. Pure."""
