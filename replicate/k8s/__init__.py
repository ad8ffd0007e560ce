"""Kubernetes: the RayJob manifest of a suite (``manifest``), the chart values it is built from
(``values``) and submitting/watching it with the ``kubernetes`` client (``cluster``)."""
