// Sources python3 refuses although tree-sitter's grammar parses them, each with the line python3
// names (and the column of the refused form where it is not the line's first), and look-alikes python3 accepts (line null). The e2e tier checks the table against python3
// itself, so that the expectations of the unit tier are python3's and not the parser's.
const MOD = 'import torch\nfrom torch import nn\n\n\n';

export const PYTHON3_CASES: { name: string; text: string; line: number | null; col?: number }[] = [
  { name: 'a print statement', text: `${MOD}print "hello"\n`, line: 5 },
  { name: 'a print statement inside a method', text: `${MOD}class P(nn.Module):\n    def forward(self, x):\n        print x.shape\n        return x\n`, line: 7, col: 9 },
  { name: 'an exec statement', text: `exec "x = 1"\n`, line: 1 },
  { name: "'<>'", text: `a, b = 1, 2\nc = a <> b\n`, line: 2, col: 7 },
  { name: 'backquotes', text: 'x = 1\ny = `x`\n', line: 2, col: 5 },
  { name: 'a leading-zero octal', text: 'x = 0777\n', line: 1, col: 5 },
  { name: 'a long suffix', text: 'x = 10L\n', line: 1, col: 5 },
  { name: '`except E, e`', text: 'try:\n    pass\nexcept ValueError, e:\n    pass\n', line: 3 },
  { name: '`raise E, value`', text: 'raise ValueError, "bad"\n', line: 1 },
  { name: "a 'ur' string", text: 'x = ur"a"\n', line: 1, col: 5 },
  { name: 'a tab after spaces opening a block', text: `${MOD}class T(nn.Module):\n    def __init__(self):\n\tsuper().__init__()\n`, line: 7 },
  { name: 'a tab-indented line beside space-indented ones', text: `${MOD}class T(nn.Module):\n    def __init__(self):\n        super().__init__()\n\tself.fc = nn.Linear(4, 4)\n`, line: 8 },
  { name: 'a dedent to no open level', text: 'if True:\n        a = 1\n    b = 2\n', line: 3 },
  // accepted by python3
  { name: 'print called with a space', text: 'print ("a"), 1\nprint\nprint = 3\n', line: null },
  { name: 'a print with a chevron (a tuple in Python 3)', text: `import sys\nprint >>sys.stderr, "x"\n`, line: null },
  { name: 'exec called', text: 'exec("x = 1")\n', line: null },
  { name: 'words in strings and comments', text: '# print "x" and a <> b\ns = "print `x` 0777 10L <>"\nt = """\nprint "y"\n\tz\n  w\n"""\n', line: null },
  { name: 'tab-indented blocks alone', text: `${MOD}class T(nn.Module):\n\tdef __init__(self):\n\t\tsuper().__init__()\n\n\tdef forward(self, x):\n\t\treturn x\n`, line: null },
  { name: 'the same tabs and spaces at each level', text: 'if True:\n  \tif True:\n  \t    x = 1\n  \ty = 2\n', line: null },
  { name: 'mixed indentation inside brackets and after a backslash', text: 'x = [\n\t1,\n        2]\ny = 1 + \\\n\t2\nif x:\n    z = (1,\n\t2)\n', line: null },
  { name: 'numbers python3 reads', text: 'a = 0\nb = 00\nc = 0o777\nd = 01j\ne = 01.5\nf = 1_000\ng = 0x1F\n', line: null },
  { name: '`except (A, B) as e` and `raise E(value)`', text: 'try:\n    pass\nexcept (ValueError, TypeError) as e:\n    raise ValueError("bad", 1)\n', line: null },
];
