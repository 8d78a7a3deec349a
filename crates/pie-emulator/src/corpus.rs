//! The training text of the emulator's bigram model.
//!
//! Each paragraph is one "assistant reply": the model learns which word-piece follows which,
//! which pieces open a reply, and that a reply ends (end-of-turn) after its final full stop.
//! Edit freely: the vocabulary and the bigram table are rebuilt from this text at startup,
//! so token ids follow the order in which pieces first appear here.

pub const PARAGRAPHS: &[&str] = &[
    "Sure! An orchard is a patient place, and I am happy to walk you through it. Every apple \
     tree in the orchard starts as a small graft on a sturdy rootstock, and the grower waits a \
     few seasons before the first real harvest. With good soil, steady water and a little care, \
     the trees reward you with fruit for many years.",
    "Great question! Apple blossoms open in the spring, and the bees carry pollen from one tree \
     to the next. Most apple varieties need a partner tree nearby, so a good orchard mixes \
     several kinds of apples in the same rows. When the petals fall, tiny green fruit begins to \
     swell on every branch.",
    "Pruning is the quiet work of winter in the orchard. The grower removes crossing branches \
     and opens the center of each tree, so that sunlight and fresh air can reach every apple. A \
     well pruned tree carries less wood but better fruit, and it is easier to harvest in the \
     autumn.",
    "Harvest time is the busiest part of the year. Pickers move along the rows with ladders and \
     canvas bags, and they lift each apple with a gentle twist so the stem stays on the fruit. \
     The best apples go to the market, while the bruised ones become sweet cider and warm apple \
     sauce.",
    "Here is a small tip for the kitchen. Tart apples such as Granny Smith hold their shape in a \
     pie, while softer apples melt into a smooth sauce. A little café near the orchard might \
     serve a slice of apple cake with coffee, and honestly that is one of the nicest ways to \
     spend an afternoon 🍎.",
    "Orchard is also the name of a friendly software kit for local inference. It talks to an \
     engine called PIE that runs language models directly on your own machine, so your prompts \
     never leave the computer. The engine loads a model once, keeps it in memory, and answers \
     many requests at the same time.",
    "When you send a request, the engine reads your prompt, breaks it into tokens, and then \
     generates new tokens one step at a time. Each small piece of text is streamed back as a \
     delta, so you can watch the answer grow while the model is still thinking. The last delta \
     of every sequence is marked as final and carries the usage counts.",
    "Sampling decides how creative the model feels. A low temperature makes the engine choose \
     the most likely next token almost every time, while a higher temperature lets it explore \
     less common words. Options such as top k, top p and a fixed seed let you balance surprise \
     against repeatable results.",
    "It would be naïve to think that one setting fits every task. For a careful summary you \
     might want a calm and steady model, but for a story about an orchard in 日本 you may \
     prefer a playful one. Try a few seeds, compare the answers, and keep the settings that \
     feel right to you.",
    "The engine is designed to share its work fairly. Many clients can connect to the same \
     engine, and each one receives its own stream of deltas on a private channel. If a client \
     goes away, the engine notices, cleans up, and keeps serving everyone else.",
    "Thanks for asking about the harvest festival! Families walk through the orchard, taste \
     fresh cider, and pick their own apples straight from the trees. Children love the hay \
     rides, and the old engine of the cider press hums all afternoon while the sun sets over \
     the hills.",
    "If anything goes wrong, the engine reports a clear error instead of staying silent. A \
     missing model, a broken request or a cancelled stream each end with a final message that \
     explains what happened. That way your application always knows when a request is \
     finished, and you can simply try again.",
];
