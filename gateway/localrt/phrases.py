"""What callers say to the agent: the word lists the agent understands and the sentences the
recogniser's domain language model is built from at start-up.
"""

from __future__ import annotations

import random
from collections.abc import Callable

FIRST_NAMES = ("jane", "john", "mary", "james", "maria", "david", "sarah", "michael", "linda",
               "robert", "emma", "peter", "anna", "alice", "bob")
LAST_NAMES = ("doe", "smith", "johnson", "brown", "garcia", "miller", "lee", "wilson", "taylor",
              "jones")
GREETINGS = ("hello", "hi", "hey", "hello there", "hi there", "good morning", "good afternoon",
             "good evening")
HELP = ("help", "i need help", "can you help me", "what can you do", "help me please",
        "what are my options")
GOODBYES = ("goodbye", "bye", "thank you", "thanks", "thank you goodbye", "that's all thanks",
            "thanks bye")
SMALL_TALK = ("how are you", "who are you", "what is your name", "yes", "no", "yes please",
              "no thanks", "okay", "repeat that", "say that again", "what did you say",
              "repeat after me", "stop", "wait", "never mind")

_DIGITS = ("zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "today",
         "tomorrow", "the day after tomorrow", "next monday", "next friday")
_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
           "september", "october", "november", "december")
_ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth",
             "ninth", "tenth", "eleventh", "twelfth", "fifteenth", "twentieth",
             "twenty first", "twenty fifth", "thirtieth")
_HOURS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
          "eleven", "twelve")
_MINUTES = ("", "", "fifteen", "thirty", "forty five", "o five")
_MERIDIEM = ("a m", "p m", "o'clock", "", "in the morning", "in the afternoon")


def domain_sentences(count: int = 4000, seed: int = 3) -> list[str]:
    """A deterministic sample of caller sentences (same seed, same model, every start)."""
    r = random.Random(seed)

    def digits(lo: int, hi: int) -> str:
        return " ".join(r.choice(_DIGITS) for _ in range(r.randint(lo, hi)))

    def name() -> str:
        return f"{r.choice(FIRST_NAMES)} {r.choice(LAST_NAMES)}"

    def day() -> str:
        if r.random() < 0.3:
            return f"{r.choice(_MONTHS)} {r.choice(_ORDINALS)}"
        return r.choice(_DAYS)

    def time() -> str:
        if r.random() < 0.1:
            return "noon"
        return " ".join(p for p in (r.choice(_HOURS), r.choice(_MINUTES), r.choice(_MERIDIEM))
                        if p)

    templates: list[Callable[[], str]] = [
        lambda: r.choice(GREETINGS),
        lambda: r.choice(HELP),
        lambda: r.choice(GOODBYES),
        lambda: r.choice(SMALL_TALK),
        lambda: f"look up customer with phone number {digits(7, 10)}",
        lambda: f"look up the customer with phone number {digits(7, 10)}",
        lambda: f"look up account number {digits(4, 6)}",
        lambda: f"look up account {digits(4, 6)}",
        lambda: f"can you look up account number {digits(4, 6)}",
        lambda: f"find customer {digits(4, 10)}",
        lambda: f"find the account {digits(4, 6)}",
        lambda: f"my phone number is {digits(7, 10)}",
        lambda: f"my account number is {digits(4, 6)}",
        lambda: f"it is {digits(4, 10)}",
        lambda: digits(4, 10),
        lambda: "look up a customer",
        lambda: "i want to look up a customer",
        lambda: f"schedule an appointment for {day()} at {time()}",
        lambda: f"book an appointment on {day()} at {time()}",
        lambda: f"book an appointment on {day()} at {time()} for {name()}",
        lambda: f"schedule an appointment for {name()} on {day()} at {time()}",
        lambda: f"i would like to book an appointment for {day()} at {time()}",
        lambda: f"i would like to schedule an appointment on {day()}",
        lambda: f"make an appointment for account {digits(4, 6)} on {day()} at {time()}",
        lambda: "schedule an appointment",
        lambda: "i need an appointment",
        lambda: f"{day()} at {time()}",
        lambda: f"at {time()}",
        lambda: f"on {day()}",
        lambda: f"my name is {name()}",
        lambda: f"this is {name()}",
    ]
    return [r.choice(templates)() for _ in range(count)]
