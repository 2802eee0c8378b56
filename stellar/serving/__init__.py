"""Serving: LitServe APIs per modality (:mod:`.api`), request/response schemas (:mod:`.schemas`), the server
(:mod:`.server`) and catalogue scoring (:mod:`.scoring`). Nothing in ``stellar.models`` or ``stellar.data``
imports this package."""
