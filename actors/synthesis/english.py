"""English word classes for the prose rules (`actors.synthesis.prose`). spaCy's blank English
pipeline has no tagger, so what a word is (verb, preposition, adverb) comes from these closed
lists and from suffixes."""

from __future__ import annotations

import re


def word_set(words: str) -> frozenset[str]:
    return frozenset(words.split())


DAYS = word_set("monday tuesday wednesday thursday friday saturday sunday")
ORDINAL = re.compile(r"\d*(1st|2nd|3rd|th)|first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth")
AUX = word_set(
    "is was were are am be been being has have had do does did will would shall should can could may might must"
)
BASE_BEFORE = word_set("do does did will would shall should can could may might must to not")  # a base form follows
IRREGULAR = word_set(  # past tenses and participles that do not end in -ed
    """arose arisen bore borne beat beaten became become began begun bound blew blown broke broken brought built
    bought caught chose chosen came dealt done drew drawn drove driven fell fallen fed felt fought found fled flew
    flown forbade forbidden forgave forgot gave given went gone grew grown hung held hid hidden kept knew known laid
    led left lent lost made meant met overcame overran overrun overthrew overthrown oversaw overseen paid rose risen
    ran run said saw seen sought sold sent shook shaken shot sank sat spoke spoken spent spun sprang stood stole
    stolen stuck struck swore sworn swept took taken taught told thought threw thrown understood underwent undergone
    undertook undertaken upheld won withdrew withdrawn withheld wrote written rebuilt retook born"""
)
S_VERBS = word_set(  # present tenses: any other word ending in -s is as often a plural noun
    """is has does remains becomes includes joins borders holds lies consists contains comprises governs leads owns
    runs reports feeds serves controls recognizes claims hosts houses operates produces draws adds boasts shares
    faces maintains retains exceeds belongs depends meets oversees buys employs links connects supplies"""
)
NOT_VERBS = word_set("hundred kindred sacred naked wicked rugged ragged beloved indeed")
ADVERBS = word_set("then also first soon later further again still once never not long nonetheless now thus")
PREPOSITIONS = word_set(
    """about above across after against along among around as at before behind below beside between beyond by
    despite during for from in inside into near of on onto over per since through throughout to toward towards under
    until upon via with within without"""
)
PARTICLES = word_set("up down out back away off")
CLAUSE = word_set("who whom whose which that where when while although though because whereas if and but or nor")
SUBORDINATORS = word_set("although though when while whereas because until and but")  # "after" is a preposition too
BOUNDARY = frozenset((",", ";", ":", "--", "\u2014", "\u2013", "(", '"', "\u201c"))
LEADING = word_set("the its their his her a an this that in on at by following despite including regarding having")
NAME_PARTICLES = word_set("el al de da del di du la le van von der bin ibn dos das")
JOINERS = frozenset(("-", "'s", "'", "\u2019s", "\u2019"))
CATEGORY = word_set(  # "Birchwood station": a name, then what kind of place it is
    """station reservoir lake river bridge dam tunnel canal island city town village district port airport harbor
    harbour mountain valley street square park building tower hall museum university school hospital"""
)
CLASSIFIERS = word_set("firm company group party organization architect author")  # "by the firm Aldane & Voss"
ANAPHORS = word_set("country island colony territory nation state region area kingdom city republic")
TIME_AFTER = word_set("later ago earlier before after")  # "two years later": a time, not a quantity


def is_verb(word: str) -> bool:
    """Whether a lowercase word reads as a verb: an auxiliary, a past form ("-ed", "became") or
    a known present form ("holds")."""
    if word in AUX or word in IRREGULAR or word in S_VERBS:
        return True
    return len(word) > 4 and word.endswith("ed") and word not in NOT_VERBS


def is_verb_after_name(word: str, following: str) -> bool:
    """Right after a name, a word ending in -s is its verb more often than not ("Iceland boasts"),
    unless a preposition follows ("elections in", "portions of": a plural noun)."""
    plural = len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is"))
    return is_verb(word) or (plural and following not in PREPOSITIONS)


def is_adverb(word: str) -> bool:
    return word in ADVERBS or (len(word) > 4 and word.endswith("ly") and word not in ("only", "early"))


def is_gerund(word: str) -> bool:
    return len(word) > 5 and word.endswith("ing")
