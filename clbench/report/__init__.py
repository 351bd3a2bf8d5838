"""``clbench report``: tables and plots from records alone (no method is imported).

``runs`` reads, filters and groups records; ``tables`` and ``plots`` turn groups into tables and
figures; ``published`` holds the paper's numbers; ``reproduce`` renders ``reproduce.yaml`` as
``REPRODUCTION.md``; ``page`` writes the report folder.
"""

from clbench.report.page import write_report
from clbench.report.runs import Filters

__all__ = ["Filters", "write_report"]
