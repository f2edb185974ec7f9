// Writes grammar/compiled.json, the compiled form of grammar/dsl.ohm and grammar/rules.ohm that the
// command line loads at start. Run after editing either grammar (`npm run grammars`); until then
// the grammars are compiled from their text on every start (correct, only slower), and the
// grammar test fails.
import { writeCompiledGrammars } from '../dist/dsl/grammars.js';

console.log(`wrote ${writeCompiledGrammars()}`);
