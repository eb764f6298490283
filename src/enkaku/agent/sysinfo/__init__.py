"""System information for diagnosing a failing machine: collect (``collect.py``), what
it means (``findings.py``), how it reads (``report.py``) and the stream service
(``service.py``). docs/system-info.md says what is and is never collected."""
