"""A held-out bank of small deterministic Python programs with inputs, CRUXEval style.

    from selfplay.evals.program_bank import chat_programs, compact_programs
    source, inputs = chat_programs(200)[0]   # "def f(text):\n    ...", ["'abc'", ...] (10 each)

AZR's three task types are graded on these: deduction (predict f(x)), abduction (find an x
with f(x) == y) and induction (write f from (x, y) pairs). A training run only ever sees the
programs its own proposer writes; this bank is written by hand-made templates that no run
proposes, so it measures program reasoning on code the model did not practise on.

No data is downloaded. Each item comes from one template filled by its own
`random.Random(f"...:{seed}:{index}")` (seeded from text, never from `hash()`), so the bank is
a pure function of (size, seed): the same on every machine and under every hash seed, and a
smaller bank is a prefix of a larger one, so `limit`s agree across runs.

Nothing here runs the programs. Their outputs are the caller's to compute, in
`selfplay.sandbox` (e.g. `validity.check_tasks`): the project never executes program text
in-process. The one exception is `compact_programs`, whose one-line expressions this module
writes itself and checks with a four-operator interpreter over the parsed AST (no eval).
"""

from __future__ import annotations

import ast
import functools
import random
import string
import textwrap
from dataclasses import dataclass
from typing import Callable

N_INPUTS = 10

# Short lowercase words for the string templates; the palindromes are kept apart so the
# palindrome template can decide how many a sentence holds.
WORDS = (
    "apple bread chair dance eagle fable grape house index jelly kite lemon mango night "
    "ocean piano queen river stone tiger umbra vivid water xenon yacht zebra art bee cat "
    "dog elf fox gum hat ink jam key log map nut owl pen rat sun top urn van web yak zip "
    "blue code data echo fish gold hill iron jump lamp moon nest open plum rock sand tree"
).split()
PALINDROMES = ("level", "noon", "racecar", "civic", "radar", "kayak", "madam", "refer",
               "wow", "pop", "eye", "anna", "deed", "stats", "tenet", "solos")


@dataclass(frozen=True)
class BankProgram:
    template: str  # name of the template that wrote it (for per-template breakdowns)
    source: str  # a program defining `f`
    inputs: list[str]  # N_INPUTS distinct argument texts, e.g. "[3, 1, 2], 2"


# ---------------------------------------------------------------- helpers for templates

def _code(text: str, /, **values) -> str:
    # `$name` placeholders: Python code never uses `$`, so no braces need escaping.
    return string.Template(textwrap.dedent(text).strip("\n")).substitute(values)


def _args(*values) -> str:
    return ", ".join(repr(v) for v in values)  # only str/int/list/tuple/dict values: literals


def _inputs(make: Callable[[int], tuple]) -> list[str]:
    """N_INPUTS distinct argument texts. `make(slot)` builds one argument tuple; templates
    use the slot to steer what varies (how many matches, where the maximum is), so that
    every program has several distinct outputs by construction, not by luck."""
    texts: list[str] = []
    for slot in range(100 * N_INPUTS):
        text = _args(*make(slot))
        if text not in texts:
            texts.append(text)
            if len(texts) == N_INPUTS:
                return texts
    raise RuntimeError("template could not make distinct inputs")


def _text(rng: random.Random, alphabet: str, lo: int, hi: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(lo, hi)))


def _ints(rng: random.Random, lo: int, hi: int, n_lo: int, n_hi: int) -> list[int]:
    return [rng.randint(lo, hi) for _ in range(rng.randint(n_lo, n_hi))]


def _words(rng: random.Random, lo: int, hi: int) -> list[str]:
    return [rng.choice(WORDS) for _ in range(rng.randint(lo, hi))]


def _shuffled(rng: random.Random, items) -> list:
    items = list(items)
    rng.shuffle(items)
    return items


TEMPLATES: dict[str, Callable[[random.Random], tuple[str, list[str]]]] = {}


def _template(fn):
    TEMPLATES[fn.__name__.removeprefix("_t_")] = fn
    return fn


# ---------------------------------------------------------------- string templates

@_template
def _t_count_chars(rng):
    chars = "".join(rng.sample("aeiou", rng.randint(1, 2)))
    source = _code("""
        def f($s):
            $n = $start
            for ch in $s:
                if ch in '$chars':
                    $n += $step
            return $n
        """, s=rng.choice(("s", "text", "word")), n=rng.choice(("count", "total", "n")),
        chars=chars, start=rng.randint(0, 3), step=rng.randint(1, 3))
    others = "bcdfgklmnprst"
    # Slot k holds k % 6 matching characters: six different counts.
    return source, _inputs(lambda k: ("".join(_shuffled(rng, [rng.choice(chars) for _ in range(k % 6)]
                                                            + list(_text(rng, others, 0, 6)))),))


@_template
def _t_transform_words(rng):
    cond = rng.choice(("len(w) > $k", "len(w) % 2 == $r", "w[0] in '$first'"))
    cond = string.Template(cond).substitute(k=rng.randint(2, 4), r=rng.randint(0, 1),
                                            first="".join(rng.sample("abcdefghlmnoprst", 6)))
    source = _code("""
        def f($text):
            $words = $text.split()
            return '$sep'.join($change if $cond else w for w in $words)
        """, text=rng.choice(("text", "sentence", "line")), words=rng.choice(("words", "parts", "tokens")),
        sep=rng.choice((" ", "-", "_")), cond=cond,
        change=rng.choice(("w[::-1]", "w.upper()", "w.capitalize()", "w[1:] + w[0]", "w * 2")))
    return source, _inputs(lambda k: (" ".join(_words(rng, 1, 4)),))


@_template
def _t_caesar(rng):
    cond = rng.choice(("ch.isalpha()", "ch in 'abcdefghijklm'", "ch not in 'aeiou '"))
    source = _code("""
        def f($s):
            $out = ''
            for ch in $s:
                if $cond:
                    $out += chr((ord(ch) - 97 + $shift) % 26 + 97)
                else:
                    $out += ch
            return $out
        """, s=rng.choice(("s", "text", "msg")), out=rng.choice(("out", "result", "encoded")),
        cond=cond, shift=rng.randint(1, 25))
    return source, _inputs(lambda k: (_text(rng, "abcdefghijklmnopqrstuvwxyz ", 2, 9),))


@_template
def _t_rotate(rng):
    body = rng.choice(("$s[$k:] + $s[:$k]", "$s[-$k:] + $s[:-$k]", "$s[$k:][::-1] + $s[:$k]",
                       "$s[:$k].upper() + $s[$k:]"))
    names = dict(s=rng.choice(("s", "text", "word", "line")), k=rng.choice(("k", "n", "shift", "by")))
    source = _code("""
        def f($s, $k):
            $k = $k % len($s)
            return $body
        """, body=string.Template(body).substitute(names), **names)
    return source, _inputs(lambda k: (_text(rng, "abcdefgh", 3, 7), rng.randint(0, 9)))


@_template
def _t_replace(rng):
    ret = rng.choice(("$text", "$text.upper()", "($text.count($new), $text)", "$text[::-1]"))
    names = dict(text=rng.choice(("text", "s", "line")), old=rng.choice(("old", "a", "target")),
                 new=rng.choice(("new", "b", "repl")))
    source = _code("""
        def f($text, $old, $new):
            $text = $text.replace($old, $new, $count)
            return $ret
        """, count=rng.choice((1, 2, -1)), ret=string.Template(ret).substitute(names), **names)
    return source, _inputs(lambda k: (_text(rng, "abcab ", 3, 10), rng.choice(("a", "b", "ab", "c", " ")),
                                      rng.choice(("x", "yz", "-", "", "Q"))))


@_template
def _t_alternate_case(rng):
    source = _code("""
        def f($s):
            $chars = [ch.upper() if i % $m == $r else ch for i, ch in enumerate($s)]
            return '$sep'.join($chars)
        """, s=rng.choice(("s", "text", "word")), chars=rng.choice(("chars", "letters", "out")),
        m=(m := rng.randint(2, 4)), r=rng.randint(0, m - 1), sep=rng.choice(("", "", ".")))
    return source, _inputs(lambda k: (_text(rng, "abcdefghijklmnop", 2, 8),))


@_template
def _t_palindromes(rng):
    ret = rng.choice(("$found", "len($found)", "' '.join($found)", "$found[::-1]"))
    names = dict(found=rng.choice(("found", "pals", "hits")))
    source = _code("""
        def f($text):
            $found = []
            for w in $text.split():
                if len(w) >= $k and w == w[::-1]:
                    $found.append(w)
            return $ret
        """, text=rng.choice(("text", "sentence")), k=rng.randint(2, 3),
        ret=string.Template(ret).substitute(names), **names)
    plain = [w for w in WORDS if w != w[::-1]]
    # Slot k holds k % 4 palindromes among plain words.
    return source, _inputs(lambda k: (" ".join(_shuffled(rng, [rng.choice(PALINDROMES) for _ in range(k % 4)]
                                                         + [rng.choice(plain) for _ in range(rng.randint(1, 3))])),))


@_template
def _t_run_length(rng):
    piece, ret = rng.choice((("$s[i] + str(j - i)", "''.join($out)"), ("str(j - i) + $s[i]", "''.join($out)"),
                             ("($s[i], j - i)", "$out"), ("j - i", "$out")))
    names = dict(s=rng.choice(("s", "text", "word", "chars")), out=rng.choice(("out", "runs", "parts")))
    source = _code("""
        def f($s):
            $out = []
            i = 0
            while i < len($s):
                j = i
                while j < len($s) and $s[j] == $s[i]:
                    j += 1
                $out.append($piece)
                i = j
            return $ret
        """, piece=string.Template(piece).substitute(names), ret=string.Template(ret).substitute(names), **names)
    return source, _inputs(lambda k: ("".join(rng.choice("abc") * rng.randint(1, 3) for _ in range(rng.randint(1, 4))),))


@_template
def _t_partition(rng):
    method = rng.choice(("partition", "rpartition"))
    ret = rng.choice(("$tail + $mid + $head", "$tail.upper() + $head", "($head, len($tail))",
                      "$head[::-1] + $mid + $tail", "[$head, $tail]"))
    names = dict(head=rng.choice(("head", "left", "before")), mid=rng.choice(("mid", "sep_", "middle")),
                 tail=rng.choice(("tail", "right", "after")))
    source = _code("""
        def f($text, $sep):
            $head, $mid, $tail = $text.$method($sep)
            return $ret
        """, text=rng.choice(("text", "s")), sep=rng.choice(("sep", "mark", "delim")), method=method,
        ret=string.Template(ret).substitute(names), **names)
    return source, _inputs(lambda k: (_text(rng, "abcd-_ ", 3, 9), rng.choice(("-", "_", " ", "b", "cd"))))


@_template
def _t_pad(rng):
    pad = rng.choice(("ljust", "rjust", "center"))
    source = _code("""
        def f($s, $n):
            if len($s) >= $n:
                return $s[:$n]$post
            return $s.$pad($n, '$fill')
        """, s=rng.choice(("s", "text", "word")), n=rng.choice(("n", "width", "size")), pad=pad,
        post=rng.choice(("", ".upper()", "[::-1]")), fill=rng.choice("*.-#+"))
    return source, _inputs(lambda k: (_text(rng, "abcdefghij", 1, 6), rng.randint(0, 9)))


@_template
def _t_strip(rng):
    chars = "".join(rng.sample("xyz-.", 2))
    ret = rng.choice(("$s", "(len($s), $s)", "$s.count('$c') * $k + len($s)", "$s.replace('$c', '')"))
    names = dict(s=rng.choice(("s", "text", "word")), c=rng.choice("abc"), k=rng.randint(2, 9))
    source = _code("""
        def f($s):
            $s = $s.$method('$chars')
            return $ret
        """, method=rng.choice(("strip", "lstrip", "rstrip")), chars=chars,
        ret=string.Template(ret).substitute(names), **names)
    return source, _inputs(lambda k: (_text(rng, chars, 0, 3) + _text(rng, "abc" + chars, 1, 5)
                                      + _text(rng, chars, 0, 3),))


@_template
def _t_digits_letters(rng):
    source = _code("""
        def f($s):
            $digits = [int(ch) for ch in $s if ch.isdigit()]
            $letters = [ch for ch in $s if ch.isalpha()]
            return $ret
        """, s=rng.choice(("s", "code", "text")), digits=(d := rng.choice(("digits", "nums"))),
        letters=(l := rng.choice(("letters", "chars"))),
        ret=rng.choice((f"sum({d}) * {rng.randint(2, 5)}, ''.join({l})", f"''.join({l}) + str(len({d}))",
                        f"{d}[::-1] + [len({l})]", f"max({d} + [0]) - len({l})")))
    return source, _inputs(lambda k: (_text(rng, "ab12c3d45", 2, 9),))


@_template
def _t_longest_word(rng):
    source = _code("""
        def f($text):
            $best = '$default'
            for w in $text.split():
                if len(w) $cmp len($best):
                    $best = w
            return $ret
        """, text=rng.choice(("text", "sentence")), best=(b := rng.choice(("best", "longest", "champ"))),
        default=rng.choice(("", "", "x")), cmp=rng.choice((">", ">=")),
        ret=rng.choice((b, f"{b}.upper()", f"({b}, len({b}))")))
    return source, _inputs(lambda k: (" ".join(_words(rng, 1, 5)),))


@_template
def _t_bracket_depth(rng):
    op, cl = rng.choice(("()", "[]", "<>", "{}"))
    source = _code("""
        def f($s):
            $depth = $best = 0
            for ch in $s:
                if ch == '$op':
                    $depth += 1
                    $best = max($best, $depth)
                elif ch == '$cl':
                    $depth -= 1
            return $ret
        """, s=rng.choice(("s", "text", "expr")), depth=(d := rng.choice(("depth", "level"))),
        best=(b := rng.choice(("best", "deepest"))), op=op, cl=cl,
        ret=rng.choice((f"{b}, {d}", f"[{b}, {d}]", f"{b} * {rng.randint(2, 5)} + {d}")))
    # Slot k opens k % 4 brackets before the random tail, so the deepest level varies.
    return source, _inputs(lambda k: (op * (k % 4) + _text(rng, op + cl + "ab", 1, 7),))


@_template
def _t_char_positions(rng):
    source = _code("""
        def f($s, $target):
            $found = []
            for i, ch in enumerate($s):
                if ch == $target:
                    $found.append($item)
            return $found
        """, s=rng.choice(("s", "text")), target=(t := rng.choice(("target", "c", "letter"))),
        found=rng.choice(("found", "positions", "idx")),
        item=rng.choice(("i", f"i * {rng.randint(2, 5)}", f"i + {rng.randint(1, 9)}", f"(i, {t}.upper())")))
    return source, _inputs(lambda k: (_text(rng, "abca", 2, 8), rng.choice("abc")))


@_template
def _t_remove_chars(rng):
    source = _code("""
        def f($s):
            $kept = [ch for ch in $s if ch not in '$chars']
            return '$sep'.join($kept)$post
        """, s=rng.choice(("s", "text", "word")), kept=rng.choice(("kept", "rest", "out")),
        chars="".join(rng.sample("abcdefgh", rng.randint(2, 3))), sep=rng.choice(("", "", "-")),
        post=rng.choice(("", ".upper()", "[::-1]")))
    return source, _inputs(lambda k: (_text(rng, "abcdefghij", 2, 8),))


@_template
def _t_word_score(rng):
    source = _code("""
        def f($text):
            $score = $start
            for w in $text.split():
                $score += len(w) if w[0] in '$chars' else -$k
            return $score
        """, text=rng.choice(("text", "sentence")), score=rng.choice(("score", "total", "points")),
        start=rng.randint(0, 5), chars="".join(sorted(rng.sample("abcdefghijklmnoprstuvwy", 10))), k=rng.randint(1, 3))
    # Different word counts give different scores whatever the letter test says.
    return source, _inputs(lambda k: (" ".join(_words(rng, k % 5 + 1, k % 5 + 1)),))


# ---------------------------------------------------------------- list and number templates

@_template
def _t_count_dict(rng):
    c = rng.choice(("counts", "freq", "seen"))
    ret = rng.choice((c, f"{{k: v for k, v in {c}.items() if v > 1}}", f"max({c}, key={c}.get)",
                      f"sorted({c}.items(), key=lambda kv: (-kv[1], kv[0]))[:{rng.randint(2, 3)}]"))
    source = _code("""
        def f($items):
            $c = {}
            for x in $items:
                $c[x] = $c.get(x, 0) + 1
            return $ret
        """, items=rng.choice(("items", "xs", "values")), c=c, ret=ret)
    pool = rng.choice(([0, 1, 2, 3, 4], list("abcde")))
    return source, _inputs(lambda k: ([rng.choice(pool) for _ in range(rng.randint(2, 8))],))


@_template
def _t_conditional_sum(rng):
    m = rng.randint(2, 4)
    source = _code("""
        def f($nums):
            $total = $start
            for n in $nums:
                if n % $m == $r:
                    $total += n
                else:
                    $total -= $q
            return $total
        """, nums=rng.choice(("nums", "values", "xs")), total=rng.choice(("total", "acc", "s")),
        start=rng.randint(0, 9), m=m, r=rng.randint(0, m - 1), q=rng.randint(1, 3))
    return source, _inputs(lambda k: (_ints(rng, 0, 20, k % 4, k % 4 + 4),))


@_template
def _t_sort_key(rng):
    key = rng.choice(("(len(w), w)", "(w[-1], w)", "(-len(w), w)", f"(w.count('{rng.choice('aeo')}'), w)",
                      "w[::-1]", "(w[1:], w)"))
    source = _code("""
        def f($words):
            $ordered = sorted($words, key=lambda w: $key$rev)
            return $ordered$cut
        """, words=rng.choice(("words", "names", "items")), ordered=rng.choice(("ordered", "result")),
        key=key, rev=rng.choice(("", ", reverse=True")), cut=rng.choice(("", f"[:{rng.randint(2, 3)}]")))
    return source, _inputs(lambda k: (_words(rng, 2, 5),))


@_template
def _t_pop_insert(rng):
    names = dict(nums=rng.choice(("nums", "items", "xs")), i=rng.choice(("i", "idx", "k")))
    source = _code("""
        def f($nums, $i):
            $nums = list($nums)
            $val = $nums.pop($i % len($nums))
            $nums.insert($pos, $val $op $c)
            return $nums
        """, val=rng.choice(("val", "x", "picked")), pos=rng.choice(("0", f"len({names['nums']})", "1")),
        op=rng.choice(("+", "*", "-")), c=rng.randint(1, 5), **names)
    return source, _inputs(lambda k: (_ints(rng, 0, 9, 2, 6), rng.randint(0, 9)))


@_template
def _t_digit_fold(rng):
    base = rng.choice((10, 10, 2, 3, 5, 8))
    step = rng.choice((f"$total += $n % {base} * {rng.randint(1, 4)}", f"$total += ($n % {base}) ** 2",
                       f"$total = $total * {base} + $n % {base}", f"$total = $total * 10 + $n % {base}"))
    names = dict(n=rng.choice(("n", "num", "x")), total=rng.choice(("total", "acc", "out")))
    source = _code("""
        def f($n):
            $total = 0
            while $n > 0:
                $step
                $n //= $base
            return $total
        """, step=string.Template(step).substitute(names), base=base, **names)
    # Slot k draws from 1..10**(k % 4 + 1): small and large numbers, so few collisions.
    return source, _inputs(lambda k: (rng.randint(1, 10 ** (k % 4 + 1)),))


@_template
def _t_collatz(rng):
    d, a, b = rng.choice(((2, 3, 1), (2, 3, 3), (2, 5, 1), (3, 2, 1), (3, 4, 2), (2, 3, 5)))
    source = _code("""
        def f($n):
            $steps = 0
            while $n > 1 and $steps < $limit:
                if $n % $d == 0:
                    $n = $n // $d
                else:
                    $n = $n * $a + $b
                $steps += 1
            return $steps, $n
        """, n=rng.choice(("n", "x", "value")), steps=rng.choice(("steps", "count", "i")),
        limit=rng.randint(8, 25), d=d, a=a, b=b)
    return source, _inputs(lambda k: (rng.randint(1, 40),))


@_template
def _t_filter_map(rng):
    m = rng.randint(2, 5)
    cond = rng.choice((f"x % {m} {rng.choice(('==', '!='))} {rng.randint(0, m - 1)}", f"x > {rng.randint(3, 12)}",
                       f"x < {rng.randint(5, 15)}"))
    source = _code("""
        def f($nums):
            $out = [x * $a + $b for x in $nums if $cond]
            return $out$post
        """, nums=rng.choice(("nums", "values", "xs")), out=rng.choice(("out", "kept", "mapped")),
        a=rng.randint(2, 5), b=rng.randint(0, 9), cond=cond, post=rng.choice(("", "[::-1]", "[:3]")))
    return source, _inputs(lambda k: (_ints(rng, 0, 20, 1, 6),))


@_template
def _t_unique(rng):
    seen = rng.choice(("seen", "unique", "kept"))
    items = rng.choice(("items", "xs", "values"))
    source = _code("""
        def f($items):
            $seen = []
            for x in $items:
                if x not in $seen:
                    $seen.append(x)
            return $ret
        """, items=items, seen=seen,
        ret=rng.choice((seen, f"{seen}[::-1]", f"len({items}) - len({seen})", f"{seen}[:{rng.randint(2, 3)}]",
                        f"[{seen}.index(x) for x in {items}]")))
    # Slot k repeats one element k % 5 extra times, so the duplicate count varies.
    def make(k):
        xs = _ints(rng, 0, 6, 1, 5)
        return (_shuffled(rng, xs + [xs[0]] * (k % 5)),)
    return source, _inputs(make)


@_template
def _t_zip_accumulate(rng):
    op = rng.choice(("+", "*", "-"))
    source = _code("""
        def f($keys, $values):
            $d = {}
            for k, v in zip($keys, $values):
                $d[k] = $d.get(k, $init) $op v
            return $d
        """, keys=rng.choice(("keys", "names")), values=rng.choice(("values", "amounts")),
        d=rng.choice(("d", "totals", "table")), init=rng.randint(1, 3) if op == "*" else rng.randint(0, 5), op=op)
    return source, _inputs(lambda k: ([rng.choice("abc") for _ in range(rng.randint(1, 5))], _ints(rng, 1, 9, 1, 5)))


@_template
def _t_argbest(rng):
    cmp = rng.choice((">", ">=", "<", "<="))
    best = rng.choice(("best", "pos", "at"))
    nums = rng.choice(("nums", "values", "xs"))
    source = _code("""
        def f($nums):
            $best = 0
            for i in range(1, len($nums)):
                if $nums[i] $cmp $nums[$best]:
                    $best = i
            return $ret
        """, nums=nums, best=best, cmp=cmp,
        ret=rng.choice((best, f"{best}, {nums}[{best}]", f"{nums}[:{best}]", f"{best} * {rng.randint(2, 9)}")))

    # Slot k puts the one extreme value at index k % 4: at least four distinct answers.
    def make(k):
        xs = _ints(rng, 10, 50, 4, 7)
        xs[k % 4] = 99 if ">" in cmp else 1
        return (xs,)
    return source, _inputs(make)


@_template
def _t_prefix(rng):
    update = rng.choice(("$acc + x", "$acc - x", "$acc * 2 + x", "max($acc, x)", f"$acc + x * {rng.randint(2, 4)}",
                         f"($acc + x) % {rng.randint(5, 9)}"))
    names = dict(acc=rng.choice(("acc", "total", "run")))
    source = _code("""
        def f($nums):
            $out = []
            $acc = $start
            for x in $nums:
                $acc = $update
                $out.append($acc)
            return $out
        """, nums=rng.choice(("nums", "values", "xs")), out=rng.choice(("out", "history", "steps")),
        start=rng.randint(0, 5), update=string.Template(update).substitute(names), **names)
    return source, _inputs(lambda k: (_ints(rng, 0, 9, 1, 6),))


@_template
def _t_grid(rng):
    names = dict(grid=rng.choice(("grid", "rows", "matrix")), row=rng.choice(("row", "line", "r")))
    agg = rng.choice(("sum($row) * $k", "max($row) - min($row)", "$row[0] + $row[-1]",
                      "sum(x for x in $row if x % 2 == 0)", "len($row) * $k + $row[0]"))
    source = _code("""
        def f($grid):
            $out = []
            for $row in $rows:
                $out.append($agg)
            return $out
        """, out=rng.choice(("out", "result", "totals")), rows=rng.choice((names["grid"], f"zip(*{names['grid']})")),
        agg=string.Template(agg).substitute(names, k=rng.randint(2, 5)), **names)
    width = rng.randint(2, 4)  # equal-length rows: zip(*grid) then keeps every column
    return source, _inputs(lambda k: ([_ints(rng, 0, 9, width, width) for _ in range(rng.randint(1, 3))],))


@_template
def _t_group_by(rng):
    g = rng.choice(("groups", "buckets", "by_key"))
    source = _code("""
        def f($words):
            $g = {}
            for w in $words:
                $g.setdefault($key, []).append(w)
            return $ret
        """, words=rng.choice(("words", "names")), g=g, key=rng.choice(("w[0]", "len(w)", "w[-1]")),
        ret=rng.choice((g, f"{{k: len(v) for k, v in {g}.items()}}", f"sorted({g})", f"list({g}.values())[-1]")))
    return source, _inputs(lambda k: (_words(rng, 1, 4),))


@_template
def _t_set_ops(rng):
    source = _code("""
        def f($a, $b):
            $common = set($a) $op set($b)
            return $ret
        """, a=rng.choice(("a", "xs", "left")), b=rng.choice(("b", "ys", "right")),
        common=(c := rng.choice(("common", "picked", "result"))), op=rng.choice(("&", "|", "-", "^")),
        ret=rng.choice((f"sorted({c})", f"sorted({c}, reverse=True)", f"[x * {rng.randint(2, 5)} for x in sorted({c})]")))
    return source, _inputs(lambda k: (_ints(rng, 0, 9, 1, 6), _ints(rng, 0, 9, 1, 6)))


@_template
def _t_fizz(rng):
    a, b = rng.sample((2, 3, 4, 5), 2)
    source = _code("""
        def f($n):
            $out = []
            for i in range(1, $n + 1):
                if i % $a == 0:
                    $out.append('$x')
                elif i % $b == 0:
                    $out.append('$y')
                else:
                    $out.append(i)
            return $out
        """, n=rng.choice(("n", "limit", "count")), out=rng.choice(("out", "seq", "result")),
        a=a, b=b, x=rng.choice(("fizz", "x", "hop")), y=rng.choice(("buzz", "y", "skip")))
    return source, _inputs(lambda k: (rng.randint(0, 12),))


@_template
def _t_base_digits(rng):
    names = dict(n=rng.choice(("n", "num", "x")), digits=rng.choice(("digits", "text", "out")))
    ret = rng.choice(("$digits or '0'", "$digits[::-1]", "len($digits), $digits", "'$prefix' + $digits"))
    source = _code("""
        def f($n):
            $digits = ''
            while $n > 0:
                $digits = str($n % $base) + $digits
                $n //= $base
            return $ret
        """, base=rng.randint(2, 9), ret=string.Template(ret).substitute(names, prefix=rng.choice(("0b", "#", "n="))),
        **names)
    return source, _inputs(lambda k: (rng.randint(0, 300),))


@_template
def _t_invert_dict(rng):
    as_str = rng.random() < 0.5
    inv = rng.choice(("inv", "by_value", "out"))
    source = _code("""
        def f($d):
            $inv = {}
            for k, v in $d.items():
                $inv[v] = $inv.get(v, $empty) + $item
            return $ret
        """, d=rng.choice(("d", "mapping", "scores")), inv=inv, empty="''" if as_str else "[]",
        item=rng.choice(("k", "k.upper()", "k * 2")) if as_str else "[k]",
        ret=rng.choice((inv, f"sorted({inv}.items())", f"list({inv}.values())")))
    return source, _inputs(lambda k: ({c: rng.randint(0, 3) for c in rng.sample("abcdef", rng.randint(1, 5))},))


@_template
def _t_compare(rng):
    source = _code("""
        def f($x, $y):
            if $x > $y:
                return $x - $y * $k
            if $x == $y:
                return '$same'
            return [$y, $x]$post
        """, **dict(zip("xy", rng.choice((("x", "y"), ("a", "b"), ("left", "right"))))), k=rng.randint(2, 4),
        same=rng.choice(("same", "tie", "equal")), post=rng.choice(("", "[::-1]", " * 2")))
    # Every third slot gives equal arguments, so all three branches are taken.
    def make(k):
        x = rng.randint(0, 9)
        return (x, x) if k % 3 == 0 else (x, rng.randint(0, 9))
    return source, _inputs(make)


@_template
def _t_chunks(rng):
    piece = rng.choice(("$items[i:i + $size]", "sum($items[i:i + $size])", "$items[i:i + $size][::-1]",
                        "max($items[i:i + $size])"))
    names = dict(items=rng.choice(("items", "nums", "xs")), size=rng.choice(("size", "n", "width")))
    source = _code("""
        def f($items, $size):
            $out = [$piece for i in range(0, len($items), $size)]
            return $out
        """, out=rng.choice(("out", "chunks", "parts")), piece=string.Template(piece).substitute(names), **names)
    return source, _inputs(lambda k: (_ints(rng, 0, 9, 1, 7), rng.randint(1, 4)))


@_template
def _t_pair_sums(rng):
    op = rng.choice(("+", "*", "-"))
    source = _code("""
        def f($nums, $target):
            $pairs = []
            for i in range(len($nums)):
                for j in range(i + 1, len($nums)):
                    if $nums[i] $op $nums[j] == $target:
                        $pairs.append((i, j))
            return $pairs
        """, nums=rng.choice(("nums", "xs")), target=rng.choice(("target", "goal", "t")),
        pairs=rng.choice(("pairs", "hits", "found")), op=op)

    # The target is usually made from two of the numbers, so most inputs have a match.
    def make(k):
        xs = _ints(rng, 0, 9, 2, 6)
        i, j = sorted(rng.sample(range(len(xs)), 2))
        target = rng.randint(0, 20) if k % 4 == 3 else {"+": xs[i] + xs[j], "*": xs[i] * xs[j], "-": xs[i] - xs[j]}[op]
        return xs, target
    return source, _inputs(make)


@_template
def _t_sort_pairs(rng):
    key = rng.choice((f"(p[1] % {rng.randint(2, 4)}, p[0])", "(-p[1], p[0])", "p[0] + p[1]", "(p[1], -p[0])"))
    source = _code("""
        def f($pairs):
            $ordered = sorted($pairs, key=lambda p: $key)
            return [p[$pick] for p in $ordered]
        """, pairs=rng.choice(("pairs", "items", "points")), ordered=rng.choice(("ordered", "ranked")),
        key=key, pick=rng.randint(0, 1))
    return source, _inputs(lambda k: ([(rng.randint(0, 9), rng.randint(0, 9)) for _ in range(rng.randint(2, 5))],))


# ---------------------------------------------------------------- the banks

def chat_bank(size: int, seed: int = 0) -> list[BankProgram]:
    """`size` distinct programs with their template names; see `chat_programs`."""
    names = list(TEMPLATES)
    # Templates take turns (a small bank still spans them all), in an order that depends on
    # the seed so that different seeds do not all start with the same template.
    random.Random(f"program-bank-order:{seed}").shuffle(names)
    bank: list[BankProgram] = []
    seen: set[str] = set()
    index = 0
    while len(bank) < size:
        if index > 20 * size + 100:
            raise RuntimeError(f"could not make {size} distinct programs")
        rng = random.Random(f"program-bank:{seed}:{index}")
        name = names[index % len(names)]
        index += 1
        source, inputs = TEMPLATES[name](rng)
        if source not in seen:  # a repeated source is skipped: later items never depend on size
            seen.add(source)
            bank.append(BankProgram(name, source, inputs))
    return bank


def chat_programs(size: int, seed: int = 0) -> list[tuple[str, list[str]]]:
    """`size` distinct (source, inputs) pairs, a pure function of (size, seed): the first k of
    chat_programs(n) equal chat_programs(k) (nested subsets), same on every machine and Python
    hash seed. Each source defines `f`; inputs are N_INPUTS distinct argument texts."""
    return [(p.source, p.inputs) for p in chat_bank(size, seed)]


# ---------------------------------------------------------------- compact expressions

_COMPACT_OPS = {ast.Add: lambda x, y: x + y, ast.Sub: lambda x, y: x - y,
                ast.Mult: lambda x, y: x * y, ast.Mod: lambda x, y: x % y}


def _compact_value(node: ast.AST, a: int) -> int:
    """Value of one of this module's own expressions: integers, `a`, + - * %. Nothing else."""
    if isinstance(node, ast.BinOp) and type(node.op) in _COMPACT_OPS:
        return _COMPACT_OPS[type(node.op)](_compact_value(node.left, a), _compact_value(node.right, a))
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.Name) and node.id == "a":
        return a
    raise ValueError(f"not a compact expression node: {ast.dump(node)}")


def _has_a(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Name) for n in ast.walk(node))


def _compact_ok(expr: str) -> bool:
    tree = ast.parse(expr, mode="eval").body
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp):
            if not (_has_a(node.left) or _has_a(node.right)):
                return False  # a constant part like `2*3`: the model should see one digit
            if isinstance(node.op, ast.Mod) and not isinstance(node.right, ast.Constant):
                return False  # `%` by `a` or by an expression could divide by zero
    return len({_compact_value(tree, a) for a in range(10)}) >= 3


def compact_value(expr: str, a: int) -> int:
    """The value at `a` of an expression of this grammar, worked out without running anything:
    integers, `a`, + - * %; anything else raises ValueError."""
    return _compact_value(ast.parse(expr, mode="eval").body, a)


@functools.lru_cache(maxsize=None)
def compact_expressions() -> tuple[str, ...]:
    """Every expression of the grammar `compact_programs` draws from, in a fixed (sorted) order:
    a few thousand, enumerated once."""
    tokens = ["a"] + [str(d) for d in range(1, 10)]
    texts = [x + op + y for x in tokens for op in "+-*%" for y in tokens]
    texts += [t + op + z for t in texts for op in "+-*%" for z in tokens]
    return tuple(sorted(t for t in texts if "a" in t and _compact_ok(t)))


def compact_source(expr: str) -> str:
    """The program text of a compact expression, for the sandbox or `static_check`."""
    return f"def f(a):\n    return {expr}"


def compact_programs(size: int, seed: int = 0) -> list[tuple[str, list[str]]]:
    """`size` distinct (expression, inputs) pairs for tiny character-level models.

    Each expression is over `a` in the characters `a0123456789+-*%`: one or two operators,
    constants 1-9, `%` only by a constant, at least 3 distinct values over a = 0..9, e.g.
    `a%4*2`. Inputs are the ten digits "0".."9" in a per-item order. One fixed shuffle of all
    candidates is cut to `size`, so banks are nested subsets as with `chat_programs`; wrap an
    expression with `compact_source` to run it."""
    candidates = list(compact_expressions())
    if size > len(candidates):
        raise ValueError(f"only {len(candidates)} compact expressions exist; asked for {size}")
    random.Random(f"compact-bank:{seed}").shuffle(candidates)
    bank = []
    for index, expr in enumerate(candidates[:size]):
        order = random.Random(f"compact-bank:{seed}:{index}").sample(range(N_INPUTS), N_INPUTS)
        bank.append((expr, [str(a) for a in order]))
    return bank
