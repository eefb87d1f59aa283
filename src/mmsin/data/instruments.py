"""The General MIDI instruments of the nsynth-like look-alike: families, programs, ranges.

NSynth files each instrument under a family (``keyboard``, ``flute``, ``guitar``, ``string``,
``bass``, ...) and a source (``acoustic``, ``electronic``, ``synthetic``). The paper trains on
acoustic keyboards and flutes; the look-alike's full size adds the keyboard (electric pianos,
clavinet), plucked (guitars, harp, pizzicato, basses) and bowed (violin to contrabass)
instruments of the same sound fonts, so that the training notes cover more of the timbres and
registers of real recordings. Electric instruments are filed under NSynth's ``electronic``
source, as NSynth does.
"""

from __future__ import annotations

#: Acoustic General MIDI keyboards, in the order the small size picks them: grand piano,
#: harpsichord, celesta, bright grand, honky-tonk. Programs 2, 4, 5 and 7 (electric grand,
#: electric pianos, clavinet) are electric instruments, which NSynth's "acoustic" source excludes.
KEYBOARD_PROGRAMS = (0, 6, 8, 1, 3)
#: GM flutes: flute, piccolo, recorder, pan flute, shakuhachi, ocarina, whistle, blown bottle.
FLUTE_PROGRAMS = (73, 72, 74, 75, 77, 79, 78, 76)
#: Playing range (MIDI, inclusive) of each program, "as many pitches as the instrument can play".
_PAPER_RANGES = {
    0: (21, 108),
    1: (21, 108),
    3: (21, 108),
    6: (29, 89),
    8: (60, 108),
    72: (74, 108),
    73: (59, 98),
}
DEFAULT_RANGE = (60, 96)  # recorder, pan flute, shakuhachi, ocarina, whistle, bottle
#: Fonts of the small size: the ones scripts/setup.sh installs, so that the small set does not
#: change when a bigger font is added later.
SMALL_FONTS = ("FluidR3_GM.sf2", "sf_GMbank.sf2", "TimGM6mb.sf2")
#: Banks 0-15 hold General MIDI presets and their GS variations; sf_GMbank's bank 127 is an
#: MT-32 map (program numbers mean other instruments) and bank 128 is percussion.
MAX_BANK = 15

#: Instruments never seen in training: the ``heldout`` split of the nsynth-like sizes, as
#: (family, sound font, bank, program). Whole presets are held out, and every training
#: candidate that plays any of their samples (same PCM data) is left out of train and test, so
#: no recording of a held-out instrument is ever trained on. Chosen among the instruments the
#: three fonts of scripts/setup.sh hold: a piano (another recording than the two pianos
#: trained on), a harpsichord and a celesta, a concert flute and an ocarina; none of them
#: shares a sample with another distinct instrument (sf_GMbank's flute does, with its
#: piccolo, recorder and shakuhachi, so it is not one of them). docs/data.md lists them.
HELDOUT_INSTRUMENTS: tuple[tuple[str, str, int, int], ...] = (
    ("keyboard", "TimGM6mb.sf2", 0, 0),  # Piano 1
    ("keyboard", "FluidR3_GM.sf2", 0, 6),  # Harpsichord
    ("keyboard", "sf_GMbank.sf2", 0, 8),  # Celesta
    ("flute", "TimGM6mb.sf2", 0, 73),  # Flute TB
    ("flute", "FluidR3_GM.sf2", 0, 79),  # Ocarina
)

#: More keyboards: electric grand, Rhodes and FM electric pianos, clavinet (source electronic).
ELECTRIC_KEYBOARD_PROGRAMS = (2, 4, 5, 7)
#: GM guitars: nylon, steel (acoustic); jazz, clean, muted (electronic). Overdriven,
#: distortion and harmonics (29-31) are left out: not single clean notes.
GUITAR_PROGRAMS = (24, 25, 26, 27, 28)
#: GM strings, bowed and plucked: violin, viola, cello, contrabass, pizzicato, harp. Tremolo
#: (44), timpani (47) and the ensembles (48-51) are left out.
STRING_PROGRAMS = (40, 41, 42, 43, 45, 46)
#: GM basses: acoustic (acoustic); fingered, picked, fretless (electronic). Slap and synth
#: basses (36-39) are left out.
BASS_PROGRAMS = (32, 33, 34, 35)
#: Programs of electric instruments, filed under NSynth's ``electronic`` source.
ELECTRIC_PROGRAMS = frozenset({2, 4, 5, 7, 26, 27, 28, 33, 34, 35})

#: Each family's programs, in the order :func:`~mmsin.data.render.distinct_instruments` visits
#: them; the two of the paper first, which keeps their instrument numbers.
FAMILY_PROGRAMS: dict[str, tuple[int, ...]] = {
    "keyboard": KEYBOARD_PROGRAMS,
    "flute": FLUTE_PROGRAMS,
    "keyboard-electric": ELECTRIC_KEYBOARD_PROGRAMS,
    "guitar": GUITAR_PROGRAMS,
    "string": STRING_PROGRAMS,
    "bass": BASS_PROGRAMS,
}
#: The paper's families (the small size) and every family (the full size). A plan group's
#: NSynth family is its name before "-".
PAPER_GROUPS = ("keyboard", "flute")
ALL_GROUPS = tuple(FAMILY_PROGRAMS)

#: Playing ranges of the added programs (MIDI, inclusive): the instruments' usual compass.
PROGRAM_RANGES: dict[int, tuple[int, int]] = {
    **_PAPER_RANGES,
    **{
        2: (21, 108),
        4: (28, 103),
        5: (28, 103),
        7: (29, 88),
        **{p: (40, 88) for p in GUITAR_PROGRAMS},
        40: (55, 103),
        41: (48, 91),
        42: (36, 76),
        43: (28, 67),
        45: (28, 96),
        46: (24, 103),
        **{p: (28, 67) for p in BASS_PROGRAMS},
    },
}


def source_of(program: int) -> str:
    """NSynth's source of a GM program: ``electronic`` for electric instruments."""
    return "electronic" if program in ELECTRIC_PROGRAMS else "acoustic"
