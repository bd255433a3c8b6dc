"""A small, fixed set of user requests for chat evaluations that no Challenger wrote.

LSP's chat Solver is measured on these (ALGORITHMS.md section 2, "Results"): its answers
against the initial model's, judged pairwise (selfplay.rewards.pairwise), and scored by the
run's reward source when it can score any text. The requests are the project's own, short
enough for a small model's context, and cover the kinds of request the paper's evaluation
mixes: explanation, advice, writing, rewriting, lists, reasoning, arithmetic and code.
Their order is fixed: `instructions(n)` is always the same first n.
"""

from __future__ import annotations

INSTRUCTIONS: tuple[str, ...] = (
    "Explain why the sky looks blue during the day.",
    "Give three tips for getting a good night's sleep.",
    "Write a short, friendly email inviting a colleague to lunch on Friday.",
    "What is the difference between weather and climate?",
    "Rewrite this sentence so it sounds more polite: Send me the report now.",
    "List four fruits that are high in vitamin C.",
    "A train leaves at 9:15 and the trip takes 2 hours and 50 minutes. When does it arrive?",
    "Write a Python function that returns the largest number in a list.",
    "Summarise in two sentences what photosynthesis does.",
    "Suggest a name for a small bakery and say why it fits.",
    "How do I boil an egg so that the yolk stays soft?",
    "What are two advantages and two disadvantages of working from home?",
    "Write a four-line poem about the sea.",
    "Explain what a prime number is to a ten-year-old.",
    "Translate 'Where is the train station?' into French.",
    "If I have 12 apples and give away a third of them, how many are left?",
    "Give me a simple recipe for a tomato salad.",
    "Why do we have leap years?",
    "Write a one-paragraph story about a lost umbrella.",
    "What should I pack for a weekend hiking trip?",
    "Explain the difference between a list and a tuple in Python.",
    "Name three ways to reduce plastic waste at home.",
    "Correct the grammar: She don't like going to school on mondays.",
    "What is 15% of 80? Show how you got it.",
    "Describe how a bicycle works in a few sentences.",
    "Give me a polite way to decline an invitation to a party.",
    "What causes the seasons on Earth?",
    "Write a haiku about autumn leaves.",
    "How can I make a small room look bigger?",
    "Explain what an API is in simple terms.",
    "Write a short thank-you note to a teacher.",
    "Compare cats and dogs as pets in three points.",
    "What is the capital of Australia, and why is it not Sydney?",
    "Give a step-by-step plan to learn to juggle three balls.",
    "Write a Python function that checks whether a word is a palindrome.",
    "Why does ice float on water?",
    "Suggest three questions to ask at the end of a job interview.",
    "Convert 100 degrees Fahrenheit to Celsius and explain the formula.",
    "Write a tweet announcing the opening of a community garden.",
    "What are the main differences between a virus and a bacterium?",
)


def instructions(n: int | None = None) -> list[str]:
    """The first `n` requests (all of them when n is None or larger than the set)."""
    return list(INSTRUCTIONS[:n] if n is not None else INSTRUCTIONS)
