"""Engine settings: one frozen dataclass, defaults tuned for a 2-core dev machine."""

from __future__ import annotations

from dataclasses import dataclass

#: What the session object reports: nobody may mistake this engine for OpenAI.
MODEL_NAME = "local-offline"

#: The SDK docstring's limit for one ``input_audio_buffer.append``.
MAX_APPEND_BYTES = 15 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class EngineConfig:
    #: Audio deltas leave at most this many times faster than real time, after an initial
    #: ``output_lead_ms`` burst. OpenAI also generates faster than playback but not instantly;
    #: pacing keeps a response "active" long enough for barge-in to mean something.
    #: 0 disables pacing (everything as fast as TTS allows).
    output_pace: float = 2.0
    output_lead_ms: int = 1000
    #: Size of one ``response.output_audio.delta``. Cost tracks the number of messages, so
    #: bigger is cheaper; 100 ms keeps pacing smooth.
    output_chunk_ms: int = 100
    #: Silero instances loaded at start-up (one per live session; more are built on demand).
    vad_prewarm: int = 2
    #: onnxruntime threads per piper synthesis (None: onnxruntime's default, one per core).
    tts_threads: int | None = 1
    #: The recogniser: "whisper" (Whisper base, generalises across voices and channels; see
    #: BENCHMARKS.md "Recogniser WER") or "pocketsphinx" (domain LM + generic LM: lighter,
    #: good on the engine's own voice only).
    asr: str = "whisper"
    #: CTranslate2 threads per Whisper decode. One: the words then depend on the audio only
    #: (two threads gave 9.2 or 11.5 % WER on the same 20 clips from run to run, 16.1 % under
    #: load: the parallel sums' order moves the beam), and on 2 cores it was faster too
    #: (1.7 s against 2.8-3.1 s for the 20 clips).
    asr_threads: int = 1
    #: Whisper's beam width (1 = greedy: ~25 % less decoder CPU, more errors off the
    #: engine's own voice; see BENCHMARKS.md "Recogniser WER").
    asr_beam_size: int = 3
    #: Whisper: weight of the domain LM when rescoring the beam's hypotheses (0: Whisper's
    #: own ranking) and pre-emphasis before log-mel (0: none). See BENCHMARKS.md
    #: "Recogniser WER", "What was tried".
    asr_lm_weight: float = 0.3
    #: Whisper: added per word of a hypothesis when the n-best is ranked (0: none). Both
    #: Whisper's summed log-probability and the LM's fall with every word, so without it the
    #: ranking favours a digit or a word left out ("seven one four" over "seven one one
    #: four"); see BENCHMARKS.md "Recogniser WER", round 3.
    asr_word_bonus: float = 1.0
    asr_preemphasis: float = 0.97
    #: Whisper: Wiener noise reduction before log-mel, as its gain floor (0: off; 0.5 lets
    #: noise down by 6 dB at most), and a second decode of the utterance slowed to this
    #: speed by WSOLA, both decodes' hypotheses ranked together (1: off). See BENCHMARKS.md
    #: "Recogniser WER", the dev/test round.
    asr_wiener: float = 0.5
    asr_stretch: float = 0.85
    #: Whisper: how the second decode's audio is slowed: "tape" (resampled, so pitch and
    #: formants fall with the rate) or "wsola" (pitch kept; the default before round 6).
    asr_stretch_by: str = "tape"
    #: Whisper: when the two decodes' best hypotheses differ, a third decode of the audio
    #: slowed to ``asr_stretch`` this way ("tape" | "wsola"; "": none), its hypotheses
    #: ranked with theirs. See BENCHMARKS.md "Recogniser WER", round 7.
    asr_third_by: str = "wsola"
    #: Whisper: the third decode's audio, when its estimated SNR is under this (dB; 0:
    #: never), is Wiener filtered as ``asr_low_snr`` filters (noise from the frames that are
    #: not digital silence, gain floor ``asr_low_floor``). Off: 13 dB gained 1.0 point on the
    #: dev set's 10 dB cells and lost 0.5 on the test set's, as ``asr_low_snr`` did in round
    #: 5; see BENCHMARKS.md "Recogniser WER", round 7.
    asr_third_low_snr: float = 0.0
    #: Whisper: a hypothesis with fewer words than this share of the pooled n-best's median
    #: count is not picked while another is left (a beam stopped after one word, "K.", for
    #: a sentence; 0: off). See BENCHMARKS.md "Recogniser WER", round 7.
    asr_short_share: float = 0.5
    #: Whisper: audio whose estimated SNR is under ``asr_low_snr`` dB (0: off) is Wiener
    #: filtered with its noise estimated on the frames that are not digital silence, gain
    #: floor ``asr_low_floor``. Off: 13 dB gained 1.3 points on the dev set's 10 dB cells
    #: (within seed-to-seed noise) and lost 1.1 on the test set's; see BENCHMARKS.md
    #: "Recogniser WER", round 5.
    asr_low_snr: float = 0.0
    asr_low_floor: float = 0.5
    #: Whisper: candidate sentences near the two best hypotheses (an out-of-domain word
    #: replaced by what the domain LM expects there, a digit of a run said twice), at most
    #: this many, scored by teacher forcing and ranked with the beam's (0: off). See
    #: BENCHMARKS.md "Recogniser WER", round 4.
    asr_expand: int = 12
    #: pocketsphinx: generic-LM decoders (~90 MB each) streaming alongside the domain
    #: decoder, one per speaker talking at the same moment; past that, low-scoring turns
    #: are re-decoded.
    asr_generic_decoders: int = 2
    #: Without a parallel generic pass, a domain transcript scoring at least this is kept.
    asr_accept_score: float = 0.5
    #: Client events other than session.update before the first session.update are refused
    #: (issue 3, "bad input"); set False to start from the defaults as OpenAI does.
    require_session_update: bool = True
    #: Bound on queued input work per session (appended chunks waiting for VAD/ASR).
    input_queue_chunks: int = 256
    #: Bound on queued outbound events per session.
    outbox_events: int = 256
    max_append_bytes: int = MAX_APPEND_BYTES
