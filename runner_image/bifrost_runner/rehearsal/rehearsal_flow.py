"""The stand-in workflow a ready runner rehearses with (see `bifrost_runner.run.rehearse`): loaded from this
folder as a workspace module is, so that the rehearsal takes the import steps of a real run too."""

import logging

from bifrost import workflow


@workflow
def rehearse(count: int = 1) -> dict[str, int]:
    logging.getLogger("bifrost.rehearsal").info("rehearsing %d", count)
    print("rehearsing")
    total = count + 1
    return {"total": total}
