"""Leave-songs-out (``--data.split songs --data.test_songs [..]``): new music, never heard in training.

Every recording of a held-out song — every subject, hearing and NMED-H condition (a reversed or scrambled version
is the same song: :func:`datamodules.songs.song_of`) — is one test span from its first sample to its last, so every
window of a test song (its EEG, and with it its audio: the CLAP embedding and mel of that window) is in test only.
Training and validation windows come from the other songs: validation is a seeded ``val_fraction`` of spans drawn
inside the training songs' recordings (as in the subjects split), so it measures held-out *time* of known songs,
not new songs. The held-out songs are named (global song ids, :data:`datamodules.songs.SONGS`); a fold needs at
least two, so that song identification among the held-out songs has a distractor.

:func:`stratified_folds` deals a song list into ``k`` folds of held-out songs that span genres where possible
(the runner's ``folds: "songs k=7"``).
"""
from __future__ import annotations

from typing import Sequence

from datamodules.selection import SelectionError

MIN_TEST_SONGS = 2  #: song identification among the held-out songs needs at least one distractor song


def held_out_songs(test_songs: Sequence[int] | None, rec_song: dict[int, int]) -> set[int]:
    """The held-out songs of a ``songs`` split, checked against the songs of the selected recordings.

    Args:
        test_songs: global song ids to hold out.
        rec_song: recording id -> its global song id.
    Raises:
        SelectionError: none given, fewer than :data:`MIN_TEST_SONGS`, one absent from the selection, or no
            training song left.
    """
    present = sorted(set(rec_song.values()))
    if not test_songs:
        raise SelectionError(f"--data.test_songs: the songs split needs the held-out songs (present: {present}) — "
                             f"pass at least {MIN_TEST_SONGS}, e.g. --data.test_songs [{present[0]}, {present[-1]}]")
    held = {int(s) for s in test_songs}
    if len(held) < MIN_TEST_SONGS:
        raise SelectionError(f"--data.test_songs: {sorted(held)} holds out fewer than {MIN_TEST_SONGS} songs (song "
                             f"identification among the held-out songs would have no distractor) — hold out at "
                             f"least {MIN_TEST_SONGS} songs")
    missing = sorted(held - set(present))
    if missing:
        raise SelectionError(f"--data.test_songs: songs {missing} are not in the selected data (present: {present}) "
                             f"— hold out songs of the selection, or select them with --data.songs / --data.dataset")
    if held >= set(present):
        raise SelectionError(f"--data.test_songs: {sorted(held)} leaves no training song (present: {present}) — "
                             "keep at least one song for training")
    return held


def stratified_folds(songs: Sequence[int], genre: dict[int, str], k: int) -> list[list[int]]:
    """``k`` folds of held-out songs, each spanning genres where possible.

    The songs are ordered by genre (the largest genre first, then by name; songs by id within a genre) and dealt
    round-robin: fold ``i`` holds ``ordered[i::k]``. Two songs of one genre then share a fold only when that genre
    has more than ``k`` songs. Raises ``ValueError`` (the runner names the field) when a fold would hold fewer
    than :data:`MIN_TEST_SONGS` songs or none would be left for training.

    Args:
        songs: the distinct global song ids of the data.
        genre: song id -> genre label.
        k: number of folds.
    Returns:
        ``[k]`` lists of song ids, sorted.
    """
    songs = sorted({int(s) for s in songs})
    if k < 2 or len(songs) // k < MIN_TEST_SONGS:
        raise ValueError(f"k={k} folds of {len(songs)} songs hold out fewer than {MIN_TEST_SONGS} songs per fold")
    if len(songs) - (len(songs) + k - 1) // k < 1:
        raise ValueError(f"k={k} folds of {len(songs)} songs leave no training song")
    by_genre: dict[str, list[int]] = {}
    for s in songs:
        by_genre.setdefault(genre[s], []).append(s)
    ordered = [s for g in sorted(by_genre, key=lambda g: (-len(by_genre[g]), g)) for s in by_genre[g]]
    return [sorted(ordered[i::k]) for i in range(k)]
