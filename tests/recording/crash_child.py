"""Child process of the ``kill -9`` test: records a call paced in real time until killed.

Prints ``fed <ms> marker <ms|->`` after each 20 ms frame, so the parent knows how much audio
the recorder had been given when it pulled the trigger, and where each marker went.
Usage: python crash_child.py ROOT CALL_ID
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.recording import CallRecorder  # noqa: E402
from tests.recording.signals import chirp, frames, noise  # noqa: E402


async def main(root: Path, call_id: str) -> None:
    loop = asyncio.get_running_loop()
    rec = CallRecorder.start(root, call_id, started_at=time.time(), opus_copy=True,
                             metadata={"transport": "twilio", "caller": "+15550002222",
                                       "agent": "default", "model": "gpt-realtime"})
    t0 = loop.time()
    floor = frames(noise(480 * 8, 40, 1))
    marker = frames(chirp(20, 400, 6000))[0]
    tone = frames(chirp(500, 300, 900, amp=0.3))
    i = 0
    while True:
        delay = t0 + i * 0.02 - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        # The stream's own clock (as an RTP timestamp gives it), paced in real time: this
        # test is about crash recovery; jittered offsets are test_recorder's business.
        offset = i * 20.0
        is_marker = i % 25 == 5
        rec.caller_audio(marker if is_marker else floor[i % len(floor)], offset)
        if i % 100 >= 50 and i % 100 < 75:
            rec.agent_audio(tone[i % 100 - 50], offset)
        if i % 50 == 0:
            rec.transcript("utterance", speaker="caller", text=f"line {i}", offset_ms=offset)
        print(f"fed {offset + 20:.1f} marker {f'{offset:.1f}' if is_marker else '-'}",
              flush=True)
        i += 1


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2]))
