#!/usr/bin/env python3
"""Writes tests/data/tokenizer_corpus.txt: lines built to break tokenizers (deterministic).

Run: python tests/data/make_tokenizer_corpus.py   (same output every time: fixed seed, no I/O).

One test case per line (split on "\\n" only: lines keep \\r, \\v, \\f, U+0085, U+2028 inside them);
the tests join several lines to make multi-line documents. No NUL byte (git would call the file
binary); the tests add NUL cases themselves. Content: many scripts, emoji (ZWJ, skin tones, flags,
keycaps), code, whitespace runs, numbers in many digit systems, contractions in every case,
special-token strings inside text, combining marks and decomposed forms (NFC work), unusual
spaces, control characters, letters and digits new in Unicode 15/16, and random mixtures.
"""
import os
import random

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tokenizer_corpus.txt")
SEED = 20261121
TARGET_LINES = 2400

LANGUAGES = [
    "The quick brown fox jumps over the lazy dog.",
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG!",
    "Pack my box with five dozen liquor jugs; sphinx of black quartz, judge my vow.",
    "Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich.",
    "Straße, Maß, weiß — ẞ großes Eszett; Fußgängerübergänge.",
    "Portez ce vieux whisky au juge blond qui fume ; où est l'hôtel ? Ça coûte 12,50 €.",
    "El pingüino Wenceslao hizo kilómetros bajo exhaustiva lluvia y frío, añoraba a su querido cachorro. ¿Qué? ¡Sí!",
    "À noite, vovô Kowalsky vê o ímã cair no pé do pinguim queixoso e vovó põe açúcar no chá de tâmaras do jabuti feliz.",
    "Quel vituperabile xenofobo zelante assaggia il whisky ed esclama: alleluja!",
    "Pchnąć w tę łódź jeża lub ośm skrzyń fig. Zażółć gęślą jaźń.",
    "Pijamalı hasta yağız şoföre çabucak güvendi. İstanbul'da ıspanak ılık.",
    "Tiếng Việt có dấu: Trăm năm trong cõi người ta, chữ tài chữ mệnh khéo là ghét nhau.",
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Жебракують філософи при ґанку церкви в Гадячі, ще й шатро їхнє п'яне знаємо.",
    "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία. Τάχιστη αλώπηξ βαφής ψημένη γη, δρασκελίζει υπέρ νωθρού κυνός.",
    "صِف خَلقَ خَودِ كَمِثلِ الشَمسِ إِذ بَزَغَت يَحظى الضَجيعُ بِها نَجلاءَ مِعطارِ",
    "مرحبا بالعالم! كيف حالك اليوم؟ هذا نص عربي مع أرقام ١٢٣٤٥ و 67890.",
    "דג סקרן שט בים מאוכזב ולפתע מצא חברה. שָׁלוֹם עֲלֵיכֶם",
    "به نام خداوند جان و خرد کزین برتر اندیشه برنگذرد ۱۴۰۲",
    "ऋषियों को सताने वाले दुष्ट राक्षसों के राजा रावण का सर्वनाश करने वाले विष्णुवतार भगवान श्रीराम। संख्या: १२३४",
    "আমি বাংলায় গান গাই। ০১২৩৪৫৬৭৮৯",
    "யாமறிந்த மொழிகளிலே தமிழ்மொழி போல் இனிதாவது எங்கும் காணோம்.",
    "ਪੰਜਾਬੀ ਭਾਸ਼ਾ ਗੁਰਮੁਖੀ ਲਿਪੀ ਵਿੱਚ ਲਿਖੀ ਜਾਂਦੀ ਹੈ।",
    "เป็นมนุษย์สุดประเสริฐเลิศคุณค่า กว่าบรรดาฝูงสัตว์เดรัจฉาน ๑๒๓",
    "ພາສາລາວ ມີຕົວອັກສອນ",
    "我能吞下玻璃而不伤身体。今天天气很好，我们去公园散步吧！",
    "我能吞下玻璃而不傷身體。繁體中文測試：臺灣、香港、澳門。",
    "いろはにほへと ちりぬるを わかよたれそ つねならむ。カタカナとひらがな、漢字の混在テキスト。",
    "ｶﾀｶﾅ半角とＡＢＣ全角、１２３全角数字。",
    "다람쥐 헌 쳇바퀴에 타고파. 한국어 문장입니다: 안녕하세요!",
    "ᄒᆞᆫ글 옛한글 조합형 ᄀᆞᄅᆞᆷ",
    "ქართული ენა ძალიან ლამაზია.",
    "Հայերեն այբուբենը ստեղծել է Մեսրոպ Մաշտոցը։",
    "ሰማይ አይታረስ ንጉሥ አይከሰስ። ፩፪፫",
    "ᠮᠣᠩᠭᠣᠯ ᠪᠢᠴᠢᠭ ᠮᠣᠩᠭᠣᠯ",
    "བོད་ཡིག་ནི་ཡི་གེ་ཡིན། ༡༢༣",
    "ꦧꦱꦗꦮ ᬩᬲᬩᬮᬶ ᮘᮞ ᮞᮥᮔ᮪ᮓ",
    "ᏣᎳᎩ ᎦᏬᏂᎯᏍᏗ ᐃᓄᒃᑎᑐᑦ ᓄᓇᕗᑦ",
    "𐌰𐌱𐌲 𐍈𐌹𐌻 — Gothic; 𓀀𓀁𓂀 hieroglyphs; 𒀀𒀁 cuneiform; 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕄𝕒𝕥𝕙 𝒮𝒸𝓇𝒾𝓅𝓉",
    "Ελληνικά και English mixed with русский и 中文 and العربية in one line.",
    "Ꭰ Ꭱ Ꭲ ꭰ ꭱ Cherokee small letters; ǅ ǈ ǋ titlecase digraphs; ﬁ ﬂ ﬀ ﬃ ligatures.",
]

EMOJI = [
    "I love it 😀😃😄😁😆 so much!!! 🎉🎊",
    "Family: 👨‍👩‍👧‍👦 couple: 👩‍❤️‍👨 kiss: 👩‍❤️‍💋‍👩 rainbow flag: 🏳️‍🌈 trans flag: 🏳️‍⚧️",
    "Thumbs 👍 👍🏻 👍🏼 👍🏽 👍🏾 👍🏿 and waves 👋🏿👋🏾👋🏽",
    "Flags 🇺🇸🇬🇧🇫🇷🇩🇪🇯🇵🇰🇷🇨🇳🇮🇳🇧🇷 and subdivision 🏴󠁧󠁢󠁳󠁣󠁴󠁿",
    "Keycaps 1️⃣2️⃣3️⃣#️⃣*️⃣ and text vs emoji: ☺ ☺️ ❤ ❤️ ✔︎",
    "Professions 👩🏽‍💻 👨🏿‍🚀 🧑🏻‍🍳 🧑‍🤝‍🧑 🫱🏻‍🫲🏿",
    "Newer emoji 🫠🫢🫣🫡🫥🫤🥹 🪿🫎🪼 🩷🩵🩶 🫨",
    "😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀 repeated",
    "Mixed: 🍕pizza🍔burger🌭hotdog, ☕️coffee, 🍺beer.",
    "Math symbols ∀x∈ℝ: x²≥0, ∑ᵢ aᵢ ≤ ∏ⱼ bⱼ, ∫₀^∞ e^{-x} dx = 1, √2 ≈ 1.41421356, ∞ ≠ ∅.",
    "Arrows ← → ↑ ↓ ⇒ ⇔ ⟶ and boxes ┌─┐│└┘ ▁▂▃▄▅▆▇█ ░▒▓",
    "Currency: $100, €200, £300, ¥400, ₹500, ₩600, ₿0.001, ¢5",
]

CODE = [
    "def fibonacci(n: int) -> int:",
    "    if n < 2:",
    "        return n",
    "    return fibonacci(n - 1) + fibonacci(n - 2)",
    "\tfor (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }",
    "\t\t\tif (x != nullptr && x->next) { return x->next->value; }",
    "#include <iostream>\\nint main() { std::cout << \"Hello, world!\" << std::endl; return 0; }",
    "template <typename T> constexpr T max(const T& a, const T& b) noexcept { return a < b ? b : a; }",
    "const result = await fetch(`${BASE_URL}/api/v1/users?id=${userId}&limit=100`);",
    "let re = /^[a-z0-9._%+-]+@[a-z0-9.-]+\\.[a-z]{2,}$/i; console.log(re.test('a@b.co'));",
    "fn main() { let v: Vec<u32> = (1..=10).map(|x| x * x).collect(); println!(\"{:?}\", v); }",
    "SELECT u.id, COUNT(*) AS n FROM users u LEFT JOIN orders o ON o.user_id = u.id WHERE u.created_at >= '2024-01-01' GROUP BY u.id HAVING n > 5;",
    "<div class=\"container\"><p id='x'>Hello &amp; welcome &lt;user&gt;</p><!-- comment --></div>",
    "{\"name\": \"Jarvis\", \"version\": \"0.1.0\", \"tags\": [\"llm\", \"serving\"], \"ok\": true, \"n\": null}",
    "for f in *.txt; do echo \"$f\" | sed -e 's/foo/bar/g' >> out.log 2>&1; done && ls -la ~/.config",
    "x = [i**2 for i in range(10) if i % 2 == 0]  # list comprehension with comment",
    "        self.assertEqual(tokenizer.decode(tokenizer.encode(text)), text)",
    "    }\r",
    "@@ -1,5 +1,7 @@ diff --git a/src/main.c b/src/main.c",
    "C:\\Users\\Admin\\Documents\\file (1).docx",
    "https://example.com/path/to/page?query=hello%20world&lang=en#section-2",
    "user@example.com, first.last+tag@sub.domain.co.uk",
    "0x7fffffff 0b101010 0o755 1e-10 6.022e23 -273.15 +42 1_000_000",
    "if(a&&b||!c){x<<=2;y>>=3;z^=~w;}",
    "print(f'{name!r:>10} {value:08.3f} {pct:.1%}')",
    "    '''docstring with 'quotes' and \"double quotes\"'''",
    "$ git commit -m \"Fix: don't crash when it's empty\"",
    "matrix = [[1, 2, 3],\t[4, 5, 6],\t[7, 8, 9]]",
    "    ",
    "\t",
    "                                                                ",
    "end of block    ",
    "   leading spaces",
    "a  b   c    d     e      f",
    "trailing tab\t",
    "\t\tmixed \t tabs\t and  spaces \t",
]

NUMBERS = [
    "1", "12", "123", "1234", "12345", "123456", "1234567", "12345678901234567890",
    "3.14159265358979323846264338327950288419716939937510",
    "1,234,567.89 and 1.234.567,89 and 1 234 567",
    "Phone: +1 (555) 123-4567, call 555.123.4567 or 5551234567",
    "Dates 2024-02-29 29/02/2024 02/29/24 12:34:56.789Z 1999",
    "Version v1.2.3-rc.4+build.567, IPv4 192.168.0.1, IPv6 2001:db8::ff00:42:8329",
    "Arabic-Indic ٠١٢٣٤٥٦٧٨٩ Extended ۰۱۲۳۴۵۶۷۸۹ Devanagari ०१२३४५६७८९ Thai ๐๑๒๓๔๕๖๗๘๙",
    "Fullwidth ０１２３４５６７８９ Bengali ০১২৩৪৫৬৭৮৯ Tamil ௦௧௨௩ Mongolian ᠐᠑᠒",
    "Superscripts x¹²³⁴ subscripts H₂O CO₂, fractions ½ ⅓ ¼ ¾ ⅞, roman Ⅰ Ⅱ Ⅻ ⅻ ↂ",
    "Circled ①②③⑳ ㉑ ㊿, parenthesized ⑴⑵, full stop ⒈⒉, dingbats ❶❷➀➊",
    "Math digits 𝟎𝟏𝟐 𝟘𝟙𝟚 𝟶𝟷𝟸, Chinese numerals 〇一二三 〡〢〣 (Nl: 〡)",
    "00000000 0000 007 0.000001 -0 +0 1e1000",
    "π≈3.1415926535, e≈2.718281828459045, φ=1.6180339887",
    "12abc34def56 a1b2c3 x86_64 utf8 h264 mp3 4K 3D",
    "2²³ 10⁻⁹ 5×10⁶ 7÷2 3½ 1/3",
]

CONTRACTIONS = [
    "It's what we're doing, isn't it? They've said I'm fine, you'll see, he'd know.",
    "IT'S WHAT WE'RE DOING, ISN'T IT? THEY'VE SAID I'M FINE, YOU'LL SEE, HE'D KNOW.",
    "It'S wE'Re ThEy'Ve I'M yOu'Ll He'D mixed case contractions 'S 'T 'RE 'VE 'M 'LL 'D",
    "'s 't 're 've 'm 'll 'd at the start; ending with '",
    "don't can't won't shouldn't wouldn't couldn't mustn't ain't y'all'd've",
    "rock 'n' roll, '90s, 'tis, o'clock, O'Brien, D'Angelo, l'amour, dell'arte",
    "Curly quotes: it’s we’re they’ve — not contractions for the regex; ‘single’ “double”",
    "Long s: 'ſ 'ſt wiſe; 'ſs; Kelvin 'K; 'İ dotted; 'ß",
    "''' \"\"\" '' \"\" '\"' \"'\" ''s '''t",
    "'Tis the season. 'TWAS night. 'Ll 'lL 'LL 'vE 'Ve 'rE",
    "quote's end' 'quoted' 'x 'y 'z '1 '2 ' ' '",
]

SPECIALS = [
    "<|im_start|>user\nHello<|im_end|>",
    "<|im_start|>system You are helpful<|im_end|> <|im_start|>assistant",
    "text before <|endoftext|> text after",
    "<|endoftext|><|endoftext|><|endoftext|>",
    "<repo_name>jarvis<file_sep>main.cpp<filename>x.py<gh_stars>100",
    "<issue_start>bug<issue_comment>fix<issue_closed><jupyter_start><jupyter_text><jupyter_code><jupyter_output><jupyter_script><empty_output>",
    "partial <|im_sta and <|im_end and <|endoftext| and im_start|> and < |im_start| >",
    "nested <<|im_start|>> and <|<|im_end|>|> and <|im_start|<|im_end|>",
    "<s>[INST] <<SYS>>\nsystem\n<</SYS>>\n\nquestion [/INST] answer </s>",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>",
    "<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n",
    "<|user|>\nhello</s>\n<|assistant|>\n",
    "<unk> <s> </s> <pad> <mask> [CLS] [SEP] <0x41> <0xFF>",
    "<|im_start|><|im_start|><|im_end|><|im_end|>",
]

COMBINING = [
    "Precomposed é è ê ë vs decomposed e\u0301 e\u0300 e\u0302 e\u0308",
    "Stacked a\u0308\u0304 o\u0323\u0302 u\u031b\u0300 (Vietnamese NFD: Vie\u0302\u0323t)",
    "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034dA\u036b\u0357\u0334\u0362\u0335\u031c\u0330\u0354L\u0368\u0367\u0369\u0358\u0320G\u0311\u0357\u030e\u0305\u035b\u0341\u0334\u033b\u0348\u034d\u0354\u0339O\u0342\u030c\u030c\u0358\u0328\u0335\u0339\u033b\u031d\u0333",
    "Hangul jamo \u1100\u1161\u11a8 \u1112\u1161\u11ab\u1100\u1173\u11af and mixed \uac00\u11a8",
    "Angstrom \u212b vs \u00c5 vs A\u030a; Ohm \u2126 vs \u03a9; Kelvin \u212a",
    "Singletons \u0340\u0341 \u0374 \u037e \u0387 \u1f71 \u2000\u2001",
    "Canonical order q\u0307\u0323 vs q\u0323\u0307; \u1e0b\u0323 d\u0323\u0307",
    "Devanagari nukta \u0915\u093c \u0958 ; Bengali \u09c7\u09be \u09cb ; Tamil \u0bc6\u0bbe \u0bca",
    "Hebrew points \u05e9\u05c1\u05bc \ufb2c ; Arabic \u0627\u0653 \u0622 \u0627\u0654 \u0623",
    "Greek \u03b1\u0313\u0301\u0345 \u1f84 \u03c9\u0342\u0345",
    "Combining at start \u0301\u0302abc and after space \u0301 and after digit 1\u20e3 5\u0338",
    "Japanese \u304b\u3099 \u304c \u30cf\u309a \u30d1 \uff76\uff9e",
    "CJK compatibility \uf900 \ufa10 \U0002f800 vs \u8c48",
]

WHITESPACE = [
    "no\u00a0break\u00a0space and ideographic\u3000space\u3000here",
    "thin\u2009space hair\u200aspace figure\u2007space en\u2002em\u2003",
    "zero\u200bwidth\u200bspace (not whitespace), ZWNJ\u200c ZWJ\u200d word\u2060joiner",
    "narrow\u202fnbsp medium\u205fmath ogham\u1680space mongolian\u180evowel separator",
    "line\u2028separator paragraph\u2029separator next\u0085line",
    "BOM\ufeffin the middle and soft\u00adhyphen",
    "vertical\u000btab form\u000cfeed carriage\rreturn",
    "file\u001cgroup\u001drecord\u001eunit\u001fseparators",
    "bell\u0007 backspace\u0008 escape\u001b[31mred\u001b[0m delete\u007f",
    "control \u0001\u0002\u0003\u0004\u0005\u0006 and C1 \u0080\u0081\u0090\u009f",
    "\u00a0\u00a0\u00a0 leading nbsp and trailing ideographic \u3000\u3000",
    " \u00a0 \u2003 \u3000 mixed spaces \t\u00a0\t",
    "bidi \u202ertl override\u202c \u200fRLM \u200eLRM \u2066isolate\u2069",
    "\r\r\r only carriage returns \r",
    "private use \ue000\uf8ff \U000f0000 and noncharacters \ufdd0 \ufffe \uffff \U0010fffe",
    "replacement \ufffd and specials \ufff9\ufffa\ufffb",
]

# Letters and digits added in Unicode 15.0-16.0: HF tokenizers knows them (Unicode 16 tables).
NEW_IN_UNICODE_16 = [
    "Garay digits \U00010d40\U00010d41\U00010d42 and letters \U00010d50\U00010d51",
    "Kawi digits \U00011f50\U00011f51\U00011f52 Kaktovik \U0001d2c0\U0001d2c1\U0001d2d3",
    "CJK Ext H \U00031350\U00031351 Ext I \U0002ebf0\U0002ebf1 Cyrillic \U0001e030\U0001e031",
    "Latin \ua7cb\ua7cc\ua7cd\ua7da Cyrillic \u1c89\u1c8a Todhri \U000105c0\U000105c1",
]

WORDS = [
    "hello", "world", "token", "the", "and", "of", "to", "in", "is", "that", "for", "it", "with", "as",
    "Tokenizer", "BPE", "merge", "rank", "unicode", "byte", "naïve", "café", "résumé", "über", "straße",
    "中文", "日本語", "한국어", "русский", "ελληνικά", "עברית", "العربية", "हिन्दी", "ไทย",
    "😀", "👨‍👩‍👧", "👍🏽", "🇯🇵", "42", "3.14", "1e9", "١٢٣", "０１", "Ⅻ", "½",
    "it's", "WE'RE", "they'Ve", "I'M", "you'll", "he'd", "can't",
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<repo_name>",
    "def", "return", "{", "}", "(", ")", ";", "==", "!=", "->", "=>", "::", "//", "/*", "*/", "#",
    "e\u0301", "\u1100\u1161", "A\u030a",
]

SEPARATORS = [" ", "  ", "   ", "\t", " \t ", "\u00a0", "\u3000", "", "", "", "-", "_", ".", ",", "/", "\r",
              "\u2009", "    ", "        ", "\u200b", "\u0085"]

# Code point ranges for random characters: scripts, symbols, marks, new letters, private use.
RANDOM_RANGES = [
    (0x20, 0x7E), (0xA0, 0x24F), (0x250, 0x36F), (0x370, 0x52F), (0x591, 0x5F4), (0x600, 0x6FF),
    (0x900, 0x97F), (0x980, 0x9FF), (0xE00, 0xE7F), (0x10A0, 0x10FF), (0x1100, 0x11FF),
    (0x1AB0, 0x1AFF), (0x1E00, 0x1FFF), (0x2000, 0x206F), (0x2070, 0x209F), (0x20A0, 0x20CF),
    (0x20D0, 0x20FF), (0x2100, 0x218F), (0x2190, 0x23FF), (0x2460, 0x24FF), (0x2500, 0x27BF),
    (0x2E80, 0x2FDF), (0x3000, 0x30FF), (0x3130, 0x318F), (0x3200, 0x33FF), (0x4E00, 0x9FFF),
    (0xA000, 0xA4CF), (0xA720, 0xA7FF), (0xAC00, 0xD7A3), (0xE000, 0xE0FF), (0xF900, 0xFAFF),
    (0xFB00, 0xFDFF), (0xFE00, 0xFE6F), (0xFF00, 0xFFEF), (0xFFF0, 0xFFFF), (0x10000, 0x1007F),
    (0x10300, 0x1034F), (0x10D40, 0x10D8F), (0x11F00, 0x11F5F), (0x13000, 0x1342F),
    (0x1D400, 0x1D7FF), (0x1D2C0, 0x1D2D3), (0x1E030, 0x1E08F), (0x1F000, 0x1FAFF),
    (0x20000, 0x2A6DF), (0x2EBF0, 0x2EE5D), (0x31350, 0x323AF), (0xE0000, 0xE007F), (0xF0000, 0xF00FF),
    (0x9, 0xD), (0x1C, 0x1F), (0x80, 0x9F),
]


def random_char(rng):
    lo, hi = rng.choice(RANDOM_RANGES)
    c = rng.randint(lo, hi)
    if c == 0x0A or 0xD800 <= c <= 0xDFFF:
        return " "
    return chr(c)


def random_mix(rng):
    """Fragments from every pool glued with assorted separators."""
    pools = [LANGUAGES, EMOJI, CODE, NUMBERS, CONTRACTIONS, SPECIALS, COMBINING, WHITESPACE, NEW_IN_UNICODE_16]
    parts = []
    for _ in range(rng.randint(1, 6)):
        kind = rng.random()
        if kind < 0.45:
            parts.append(rng.choice(WORDS))
        elif kind < 0.7:
            line = rng.choice(rng.choice(pools))
            a = rng.randint(0, len(line))
            b = rng.randint(a, min(len(line), a + rng.randint(1, 40)))
            parts.append(line[a:b])
        elif kind < 0.9:
            parts.append("".join(random_char(rng) for _ in range(rng.randint(1, 12))))
        else:
            parts.append(str(rng.randint(0, 10 ** rng.randint(1, 25))))
    return "".join(p + rng.choice(SEPARATORS) for p in parts)


def variants(line, rng):
    """Case and spacing variants of a hand-written line."""
    out = [line.upper(), line.lower(), " " + line, line + " ", "  " + line + "  ", "\t" + line]
    words = line.split(" ")
    if len(words) > 2:
        out.append("  ".join(words))
        out.append("\u00a0".join(words))
        out.append("".join(words))
    return out


def long_lines(rng):
    return [
        " " * 300 + "x" + " " * 257,
        "\t" * 100 + "tabs" + " \t" * 50,
        "9" * 1000,
        "".join(str(rng.randint(0, 9)) for _ in range(3000)),
        "a" * 2000,
        "ab" * 1500,
        "我能吞下玻璃而不伤身体" * 150,
        "😀" * 500 + "👨‍👩‍👧‍👦" * 100,
        ".,;:!?" * 400,
        " ".join(rng.choice(WORDS) for _ in range(1500)),
        "".join(random_char(rng) for _ in range(4000)),
        "\u00a0" * 200 + "\u3000" * 200 + "\r" * 50,
        "e" + "\u0301" * 300,
    ]


def main():
    rng = random.Random(SEED)
    hand = LANGUAGES + EMOJI + CODE + NUMBERS + CONTRACTIONS + SPECIALS + COMBINING + WHITESPACE + NEW_IN_UNICODE_16
    hand = [line for piece in hand for line in piece.split("\n")]  # a few literals hold \n
    lines = list(hand)
    for line in hand:
        lines.extend(variants(line, rng))
    lines.extend(long_lines(rng))
    while len(lines) < TARGET_LINES:
        lines.append(random_mix(rng))
    lines = [line.replace("\n", " ").replace("\x00", " ") for line in lines]
    with open(OUT, "w", encoding="utf-8", newline="") as f:
        f.write("\n".join(lines) + "\n")
    print(f"{OUT}: {len(lines)} lines")


if __name__ == "__main__":
    main()
