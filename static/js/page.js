// Pages that show finished answers without the conversation's script (a shared conversation,
// the compare view): typeset their math and give them copy buttons.
import { enhance } from "./reading.js";

enhance(document.querySelector("main") || document.body);
