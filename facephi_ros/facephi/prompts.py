"""All the words FacePhi uses: alignment sentences, the chat prompt, instruction and answer
templates, class keywords and the valence-arousal description prompt. Written for this project.

`FACE_TOKEN` marks where the projected landmark token(s) go; it never reaches the tokenizer.
"""
from __future__ import annotations

import re

FACE_TOKEN = "<face>"

SYSTEM = ("You are the perception module of a social robot. You receive the 3-D facial landmarks of the person "
          "in front of the robot and say which emotion their expression shows.")

# A short gloss of what each expression does to the face; used in the alignment sentences.
GLOSS = {
    "angry": "lowered, drawn-together brows and pressed or tightened lips",
    "disgust": "a wrinkled nose and a raised upper lip",
    "fear": "raised brows pulled together, wide eyes and lips stretched back",
    "happy": "raised cheeks and mouth corners pulled up into a smile",
    "neutral": "relaxed brows, eyes and mouth",
    "sad": "inner brows raised, mouth corners pulled down",
    "surprise": "brows lifted high, eyes wide open and the jaw dropped",
}
ADJECTIVE = {"angry": "angry", "disgust": "disgusted", "fear": "afraid", "happy": "happy", "neutral": "neutral",
             "sad": "sad", "surprise": "surprised"}
NOUN = {"angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "happiness", "neutral": "no particular emotion",
        "sad": "sadness", "surprise": "surprise"}

# Alignment sentences (text side of the contrastive training): a family per class.
ALIGN_TEMPLATES = [
    "a face that looks {adj}.",
    "the facial expression of a person who is {adj}.",
    "a 3-D face mesh showing {noun}.",
    "someone whose face shows {noun}: {gloss}.",
    "an expression with {gloss}.",
    "landmarks of a {adj} face.",
    "a photo of a {adj} person.",
    "this person feels {adj}.",
]

# 15 instructions. Each holds the landmark placeholder once.
INSTRUCTIONS = [
    "Here are the facial landmarks of the person in front of you: <face> Which emotion does the face show?",
    "<face> Looking at these face landmarks, what is the person feeling?",
    "Face mesh: <face> Name the emotion in this expression.",
    "What emotion is this face expressing? Landmarks: <face>",
    "Read the expression from these 3-D landmarks and tell me the emotion. <face>",
    "The camera sees this face: <face> How does the person feel?",
    "Landmarks <face> Describe the emotion you see in one sentence.",
    "Is this person happy, sad, angry, afraid, disgusted, surprised or neutral? <face>",
    "Tell the robot which emotion the user shows. Face: <face>",
    "Given the face geometry <face>, what is the facial expression?",
    "<face> Which feeling does this expression suggest?",
    "Classify the emotion of this face. <face>",
    "From the shape of the brows, eyes and mouth in <face>, what emotion is it?",
    "A person is looking at you. Their face: <face> What mood are they in?",
    "Please identify the emotion of the face below.\n<face>",
]
DEFAULT_INSTRUCTION = 0  # used at inference (its prefix KV is computed once)

# 10 answers per class; every one names the class keyword.
ANSWERS = {
    "angry": [
        "The person looks angry.", "This face shows anger.", "They seem angry: the brows are pulled down and together.",
        "The expression is angry.", "I see an angry face.", "Anger: the brows are lowered and the lips are tight.",
        "The person appears to be angry.", "This is an angry expression.", "They look annoyed and angry.",
        "The emotion is anger.",
    ],
    "disgust": [
        "The person looks disgusted.", "This face shows disgust.", "They seem disgusted: the nose is wrinkled.",
        "The expression is one of disgust.", "I see a disgusted face.", "Disgust: the upper lip is raised.",
        "The person appears to be disgusted.", "This is a disgusted expression.", "They look repelled, disgusted.",
        "The emotion is disgust.",
    ],
    "fear": [
        "The person looks afraid.", "This face shows fear.", "They seem afraid: the eyes are wide and the brows raised.",
        "The expression is fearful.", "I see a frightened, fearful face.", "Fear: the lips are stretched back.",
        "The person appears to be afraid.", "This is a fearful expression.", "They look scared and afraid.",
        "The emotion is fear.",
    ],
    "happy": [
        "The person looks happy.", "This face shows happiness.", "They seem happy: they are smiling.",
        "The expression is happy.", "I see a happy face.", "Happiness: the cheeks are raised in a smile.",
        "The person appears to be happy.", "This is a happy expression.", "They look cheerful and happy.",
        "The emotion is happiness.",
    ],
    "neutral": [
        "The person looks neutral.", "This face is neutral.", "They seem neutral: the face is relaxed.",
        "The expression is neutral.", "I see a neutral face.", "Neutral: no strong emotion is visible.",
        "The person appears to be neutral.", "This is a neutral expression.", "They look calm and neutral.",
        "The emotion is neutral.",
    ],
    "sad": [
        "The person looks sad.", "This face shows sadness.", "They seem sad: the mouth corners are turned down.",
        "The expression is sad.", "I see a sad face.", "Sadness: the inner brows are raised.",
        "The person appears to be sad.", "This is a sad expression.", "They look unhappy and sad.",
        "The emotion is sadness.",
    ],
    "surprise": [
        "The person looks surprised.", "This face shows surprise.", "They seem surprised: the brows are raised high.",
        "The expression is surprised.", "I see a surprised face.", "Surprise: the eyes are wide and the jaw drops.",
        "The person appears to be surprised.", "This is a surprised expression.", "They look astonished and surprised.",
        "The emotion is surprise.",
    ],
}
# The answer scored per class in likelihood mode (the same shape for every class).
LIKELIHOOD_ANSWER = 0

# Keywords for keyword-matched accuracy (the paper's metric): word stems, whole-word matched.
KEYWORDS = {
    "angry": ["angry", "anger", "angrily"],
    "disgust": ["disgust", "disgusted", "disgusting"],
    "fear": ["fear", "fearful", "afraid", "scared", "frightened"],
    "happy": ["happy", "happiness", "joy", "joyful"],
    "neutral": ["neutral"],
    "sad": ["sad", "sadness"],
    "surprise": ["surprise", "surprised", "astonished"],
}


def align_sentences(classes: list[str]) -> list[list[str]]:
    """Per class, its alignment sentences."""
    return [[t.format(adj=ADJECTIVE.get(c, c), noun=NOUN.get(c, c), gloss=GLOSS.get(c, c)) for t in ALIGN_TEMPLATES]
            for c in classes]


def answers_for(cls: str) -> list[str]:
    if cls in ANSWERS:
        return ANSWERS[cls]
    return [f"The person looks {cls}.", f"The emotion is {cls}."]


def keyword_class(text: str, classes: list[str]) -> int | None:
    """Index of the class whose keyword appears first in `text`; None when none appears."""
    low = text.lower()
    best, best_pos = None, len(low) + 1
    for i, c in enumerate(classes):
        for kw in KEYWORDS.get(c, [c]):
            m = re.search(rf"\b{re.escape(kw)}\b", low)
            if m and m.start() < best_pos:
                best, best_pos = i, m.start()
    return best


VA_INSTRUCTION = (
    "In one short sentence of at most 15 words, say how this person's face looks and how they seem to feel. "
    "Measured from their face: valence {valence:+.2f} (from -1 unpleasant to +1 pleasant), arousal {arousal:+.2f} "
    "(from -1 calm to +1 excited), most likely emotion: {label}, strongest facial movements: {movements}."
)


_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s|$)")


def ends_sentence(text: str, min_words: int = 4) -> bool:
    """True when `text` ends with a sentence end (. ! ? and closing quotes) after a few words."""
    t = text.rstrip()
    return len(t.split()) >= min_words and re.search(r"[.!?][\"')\]]*$", t) is not None


def complete_sentences(text: str) -> str:
    """`text` up to its last complete sentence. Text without a sentence end (a reply cut by the
    token limit) is cut back to its last clause (comma or semicolon) and given a full stop."""
    t = text.strip()
    ends = [m.end() for m in _SENTENCE_END.finditer(t)]
    if ends:
        return t[:ends[-1]]
    cut = max(t.rfind(","), t.rfind(";"))
    if cut > 0 and len(t[:cut].split()) >= 4:
        t = t[:cut]
    return t.rstrip(" ,;:-") + "." if t else t


def movement_text(blendshapes: dict[str, float], top: int = 3) -> str:
    """'mouthSmileLeft 0.82, cheekSquintLeft 0.41' -> 'smile left (0.82), cheek squint left (0.41)'."""
    items = sorted(((k, v) for k, v in blendshapes.items() if k != "_neutral"), key=lambda kv: -kv[1])[:top]
    if not items:
        return "none"
    return ", ".join(f"{_words(k)} ({v:.2f})" for k, v in items)


def _words(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r" \1", name).lower()

VA_SYSTEM = ("You are the voice of a social robot. You describe the facial expression of the person in front of "
             "the robot kindly and briefly, from measurements of their face.")
