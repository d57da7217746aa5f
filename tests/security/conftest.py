"""The security suite: each scenario of issue 16 as an attack that fails.

Worker attacks run a real ``wabridge worker`` process (the state suite's fixtures); edge attacks a
real edge application over this test's schema and Redis keys.
"""

from tests.pipeline.conftest import pipeline, pipeline_settings  # noqa: F401 - fixtures
from tests.state.conftest import (  # noqa: F401 - fixtures, re-exported for this package
    clean_changelogs,
    http,
    pg,
    producer,
    redis,
    state_settings,
    workers,
)
