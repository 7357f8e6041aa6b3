"""Test helper: build a tiny, randomly initialised BGE-M3-shaped model fully offline.

The directory produced by :func:`build_tiny_m3` looks like ``BAAI/bge-m3`` to FlagEmbedding:

* an ``XLMRobertaModel`` (random weights, ``max_position_embeddings=8194`` so 8192-token
  inputs work, saved as safetensors);
* an ``XLMRobertaTokenizerFast`` whose BPE vocabulary (Metaspace pre-tokenizer, like XLM-R's
  SentencePiece) is trained at call time on the English + Russian corpus embedded below;
  special tokens ``<s>``=0, ``<pad>``=1, ``</s>``=2, ``<unk>``=3 and ``<mask>`` last;
* ``colbert_linear.pt`` / ``sparse_linear.pt`` heads (random, seeded; the sparse bias is
  positive so lexical weights are never empty);
* ``1_Pooling/config.json`` declaring CLS pooling, as in the real BGE-M3 repository.

It loads with ``BGEM3FlagModel(str(path), use_fp16=False, devices="cpu")`` (add
``colbert_dim=N`` when the model was built with a ``colbert_dim`` different from
``hidden_size``). The vectors are meaningless but deterministic: the same arguments always
give the same files and the same embeddings. Building takes well under a second once torch
and transformers are imported.
"""

from __future__ import annotations

import json
import logging
import string
from pathlib import Path

logger = logging.getLogger(__name__)

SPECIAL_TOKENS: tuple[str, ...] = ("<s>", "<pad>", "</s>", "<unk>")
MASK_TOKEN = "<mask>"
MODEL_MAX_LENGTH = 8192
DEFAULT_VOCAB_SIZE = 4000
SPARSE_BIAS = 1.0
SPARSE_WEIGHT_SCALE = 0.5

# Training text for the tokenizer. Each line is one "sentence"; the mix of English and
# Russian (legal, technical, everyday) gives real subwords for both scripts.
_CORPUS_EN = """\
The quick brown fox jumps over the lazy dog near the river bank.
A vector database stores embeddings and answers nearest neighbour queries quickly.
Hybrid search combines dense vectors, sparse lexical weights and late interaction scores.
The supplier shall deliver the goods within thirty days of receiving the purchase order.
Payment is due no later than the fifteenth day of the following month.
This agreement is governed by the laws of the State of New York.
Either party may terminate the contract with sixty days written notice.
The buyer must inspect the goods upon delivery and report any defects promptly.
Confidential information shall not be disclosed to any third party without consent.
The warranty period begins on the date of installation and lasts for two years.
Our team released a new version of the indexer with faster batch uploads.
Please restart the server after changing the configuration file.
The function returns a list of dictionaries with scores and document identifiers.
Tokenization splits text into subword units before it is fed to the transformer.
Attention layers let every token look at every other token in the sequence.
Long documents are split into overlapping chunks of roughly five hundred tokens.
The retriever fetches the top ten passages and a reranker reorders them.
Memory usage grows quadratically with the sequence length in standard attention.
She opened the window and listened to the rain falling on the roof.
He walked to the station every morning, even in the coldest weeks of winter.
The children built a snowman in the yard and gave it a carrot nose.
My grandmother bakes apple pie with cinnamon, butter and a little lemon zest.
Add two cups of flour, one egg and a pinch of salt, then stir until smooth.
Preheat the oven to one hundred eighty degrees and bake for forty minutes.
The museum opens at nine and closes at six, except on Mondays.
We took the night train from Berlin to Vienna and arrived before breakfast.
The mountain trail was steep, rocky and covered with fresh snow.
Tickets for the concert sold out within an hour of going on sale.
The river freezes in December and the ice melts again in early April.
Scientists measured the temperature of the ocean at different depths.
Photosynthesis converts light energy into chemical energy stored in sugar.
The heart pumps blood through arteries, veins and tiny capillaries.
Antibiotics do not work against viruses such as influenza or the common cold.
The patient was advised to rest, drink fluids and take the medicine twice a day.
Regular exercise improves sleep, mood and long term cardiovascular health.
The central bank raised interest rates to slow down inflation.
Quarterly revenue increased by twelve percent compared with the previous year.
Investors worry about rising debt, weak demand and uncertain energy prices.
The company plans to open three new factories and hire two thousand workers.
An invoice must include the tax number, the date and the total amount.
The accountant reconciled the bank statements with the general ledger.
Shares fell sharply after the earnings report missed analyst expectations.
The football match ended in a draw after a late goal in extra time.
She won the marathon in a record time of two hours and nineteen minutes.
The tennis final lasted almost five hours and thrilled the crowd.
The coach praised the young goalkeeper for his calm and confident play.
Shakespeare wrote tragedies, comedies and histories that are still performed today.
The novel follows a young orphan who travels across the country in search of his family.
Poetry often relies on rhythm, rhyme and vivid images to express emotion.
The library lends books, films and music, and it offers free internet access.
In 1969 astronauts landed on the Moon and walked on its dusty surface.
The Roman Empire built roads, aqueducts and cities across Europe.
The printing press made books cheaper and spread new ideas quickly.
The industrial revolution changed how people worked, lived and travelled.
Weather forecast: cloudy in the morning, light rain in the afternoon, clearing at night.
A strong wind from the north will bring colder air and frost on Thursday.
Heavy snowfall closed several roads and delayed flights at the airport.
The summer was unusually hot and dry, and many rivers fell to record lows.
Install the package with pip and run the command line tool with the help flag.
The error message says the file could not be found in the given directory.
Use a virtual environment so that project dependencies do not conflict.
The unit tests check that the parser handles empty lines and unicode text.
Logging at the debug level shows every request sent to the database.
The configuration lists the collection name, the vector size and the distance metric.
Cosine similarity measures the angle between two vectors regardless of their length.
Sparse vectors store only the non-zero weights and their token indices.
The payload of each point keeps the source file, the page number and the chunk text.
Queries are embedded with the same model as the documents.
A snapshot of the collection can be restored on another machine.
The cat slept on the warm windowsill while the dog chased its tail.
Birds migrate south in autumn and return north in spring.
The forest was quiet except for the sound of a distant woodpecker.
Bees collect nectar from flowers and turn it into honey.
Whales communicate over long distances using low frequency sounds.
The garden needs water every evening during the hot weeks of July.
Tomatoes, cucumbers and peppers grow well in a sunny greenhouse.
The farmer harvested wheat in August and stored the grain in dry barns.
Electric cars use batteries that can be charged at home or at public stations.
Solar panels convert sunlight directly into electricity.
Wind turbines are often built on hills or offshore where the wind is strong.
The bridge was closed for repairs after engineers found cracks in the concrete.
The new subway line connects the airport with the city centre in twenty minutes.
Please fill in the form, sign it and send it back by email.
The meeting has been moved to Tuesday at three o'clock in room twelve.
Thank you for your order; it will be shipped within two business days.
Your password must contain at least twelve characters, including a number.
Customer support is available from eight in the morning until eight in the evening.
The lease ends on the thirty first of March and may be renewed for one year.
The landlord is responsible for major repairs, the tenant for minor ones.
Rent is paid monthly in advance to the bank account stated in the agreement.
The seller guarantees that the goods are free from defects in material and workmanship.
Any dispute shall first be resolved by negotiation and then by arbitration.
Force majeure includes floods, earthquakes, wars and other events beyond control.
The parties signed the contract in two copies of equal legal force.
The employee is entitled to twenty eight calendar days of paid annual leave.
The probation period shall not exceed three months.
Overtime work is paid at one and a half times the normal hourly rate.
The board of directors approved the annual report and the dividend policy.
Shareholders may vote in person or by proxy at the general meeting.
The auditor found no material misstatements in the financial statements.
Mathematics studies numbers, shapes, structures and patterns of change.
A prime number has exactly two divisors: one and itself.
The derivative describes how a function changes as its input changes.
Matrix multiplication is not commutative in general.
Gravity keeps the planets in orbit around the Sun.
Water boils at one hundred degrees Celsius at sea level.
Light travels about three hundred thousand kilometres per second.
Atoms consist of protons, neutrons and electrons.
The telescope captured images of a galaxy millions of light years away.
Volcanoes erupt when pressure from molten rock builds up beneath the surface.
Earthquakes are measured on a scale that describes the energy they release.
He forgot his umbrella and got soaked on the way home.
They argued about politics until midnight and then laughed about it.
I would like a cup of coffee with milk and no sugar, please.
Where is the nearest pharmacy, and is it open on Sunday?
Could you send me the report before the end of the day?
We are looking forward to working with you on this project.
The hotel room had a view of the harbour and a small balcony.
The train was delayed by forty minutes because of a signal failure.
Don't forget to bring your passport, tickets and a charger.
The old castle stands on a hill above the village.
Fresh bread, cheese and olives were served on a wooden board.
The soup was too salty, but the dessert was excellent.
Chess requires patience, memory and the ability to plan several moves ahead.
The orchestra tuned their instruments before the symphony began.
The painter used bright colours to capture the light of the sea.
Jazz musicians often improvise around a familiar melody.
Programming languages such as Python, Rust and Go are popular for backend services.
The compiler reported a type error on line forty two.
Version control lets developers track changes and collaborate safely.
Containers package an application with its libraries and configuration.
The API returns JSON with fields for id, title, score and metadata.
Rate limits protect the service from too many requests in a short time.
Encryption keeps data private while it is stored or sent over the network.
Backups should be tested regularly, not just created.
The GPU speeds up matrix operations used in neural networks.
Training a large model requires a lot of data, compute and careful tuning.
Evaluation uses recall at ten and mean reciprocal rank on a held out set.
The dataset contains questions, relevant passages and hard negatives.
Chunk overlap helps keep sentences that cross a boundary together.
PDF files may contain text, images, tables and scanned pages.
Optical character recognition turns scanned images into searchable text.
Tables are hard to split into chunks without losing their structure.
Metadata filters restrict the search to a given author, year or language.
Numbers like 3.14, 2024, 10,000 and 42% appear in reports and invoices.
Call us at +1 555 0100 or write to info@example.com for details.
The deadline is 2025-03-31, and the budget is 1.5 million dollars.
Model names such as BGE-M3, XLM-RoBERTa and MiniLM are common in retrieval.
Qdrant supports named vectors, so one point can hold dense, sparse and multi vectors.
Reciprocal rank fusion merges ranked lists without tuning score scales.
The village had one shop, one school and a church with a tall bell tower.
The wedding took place in June under an old oak tree.
After the storm the streets were full of fallen branches and leaves.
Every spring the town holds a festival with music, food and dancing.
The kids were excited about the summer holidays at the seaside.
Winter evenings are long, dark and perfect for reading.
The detective studied the footprints and the broken lock carefully.
A mysterious letter arrived without a stamp or a return address.
The captain ordered the crew to lower the sails before the storm.
The island was small, green and surrounded by coral reefs.
Doctors recommend eating vegetables, fruit, whole grains and less sugar.
Vaccines train the immune system to recognise specific pathogens.
The hospital opened a new wing for children and their parents.
Nurses work long shifts and care for patients day and night.
The court ruled that the dismissal of the employee was unlawful.
The plaintiff demanded compensation for damages and legal costs.
The defendant denied all allegations and filed a counterclaim.
The judge postponed the hearing until the experts submit their opinions.
Intellectual property includes patents, trademarks and copyrights.
The licence permits use, copying and modification under certain conditions.
Personal data must be processed lawfully, fairly and transparently.
The data controller shall notify the authority of a breach within 72 hours.
"""

_CORPUS_RU = """\
Договор поставки товара заключается в письменной форме.
Поставщик обязуется передать товар покупателю в срок, установленный договором.
Покупатель обязан принять товар и оплатить его в течение десяти банковских дней.
Оплата производится безналичным расчётом на расчётный счёт поставщика.
Качество товара должно соответствовать требованиям государственных стандартов.
При обнаружении недостатков покупатель вправе потребовать замены товара.
Стороны несут ответственность за неисполнение обязательств по настоящему договору.
Споры разрешаются путём переговоров, а при недостижении согласия — в арбитражном суде.
Настоящий договор вступает в силу с момента подписания и действует до конца года.
Обстоятельства непреодолимой силы освобождают стороны от ответственности.
Арендатор обязуется своевременно вносить арендную плату и содержать помещение в порядке.
Арендодатель передаёт нежилое помещение общей площадью сто двадцать квадратных метров.
Работник имеет право на ежегодный оплачиваемый отпуск продолжительностью двадцать восемь дней.
Работодатель обязан обеспечить безопасные условия труда.
Заработная плата выплачивается не реже чем каждые полмесяца.
Трудовой договор может быть расторгнут по соглашению сторон.
Исковое заявление подаётся в суд по месту нахождения ответчика.
Суд удовлетворил требования истца частично и взыскал неустойку.
Ответчик не явился в судебное заседание, хотя был надлежащим образом извещён.
Апелляционная жалоба может быть подана в течение одного месяца.
Персональные данные обрабатываются только с согласия субъекта персональных данных.
Оператор обязан принимать меры по защите персональных данных от неправомерного доступа.
Акционеры утвердили годовой отчёт и распределение прибыли общества.
Совет директоров принял решение о выплате дивидендов.
Бухгалтер подготовил счёт-фактуру и акт выполненных работ.
Налоговая декларация представляется не позднее двадцать пятого числа.
Выручка компании за квартал выросла на двенадцать процентов.
Центральный банк повысил ключевую ставку, чтобы сдержать инфляцию.
Курс рубля снизился на фоне падения цен на нефть.
Инвесторы опасаются роста долговой нагрузки и замедления экономики.
Компания планирует открыть новый завод и создать тысячу рабочих мест.
Векторная база данных хранит эмбеддинги и быстро находит ближайших соседей.
Гибридный поиск объединяет плотные векторы, разреженные веса и позднее взаимодействие.
Длинные документы разбиваются на фрагменты примерно по пятьсот токенов.
Токенизатор разбивает текст на подслова перед подачей в трансформер.
Механизм внимания позволяет каждому токену учитывать все остальные токены.
Модель возвращает плотный вектор, лексические веса и векторы для каждого токена.
Запрос кодируется той же моделью, что и документы.
Косинусное сходство измеряет угол между двумя векторами.
Коллекция в Qdrant хранит точки с векторами и полезной нагрузкой.
Перезапустите сервер после изменения файла конфигурации.
Установите пакет через pip и запустите утилиту командной строки.
Сообщение об ошибке говорит, что файл не найден в указанном каталоге.
Модульные тесты проверяют разбор пустых строк и текста в юникоде.
Резервные копии нужно регулярно проверять, а не только создавать.
Шифрование защищает данные при хранении и передаче по сети.
Программисты пишут код на Python, Rust и Go для серверных сервисов.
Компилятор сообщил об ошибке типов в сорок второй строке.
Система контроля версий позволяет отслеживать изменения в коде.
Видеокарта ускоряет матричные операции в нейронных сетях.
Для обучения большой модели нужно много данных и вычислений.
Оценка качества поиска проводится по полноте на первых десяти результатах.
Распознавание текста превращает отсканированные страницы в поисковый текст.
Таблицы трудно разбить на фрагменты без потери структуры.
Фильтры по метаданным ограничивают поиск по автору, году или языку.
Мама испекла пирог с яблоками и корицей.
Добавьте два стакана муки, одно яйцо и щепотку соли.
Разогрейте духовку до ста восьмидесяти градусов и выпекайте сорок минут.
Суп получился слишком солёным, зато десерт был превосходным.
Я хотел бы чашку кофе с молоком и без сахара.
Где находится ближайшая аптека и работает ли она в воскресенье?
Не забудьте взять паспорт, билеты и зарядное устройство.
Поезд опоздал на сорок минут из-за неисправности светофора.
Мы ехали ночным поездом из Москвы в Санкт-Петербург.
Из окна гостиницы открывался вид на гавань и старый маяк.
Музей открыт с девяти до шести, кроме понедельника.
Билеты на концерт были распроданы за один час.
Дети слепили снеговика во дворе и дали ему морковку вместо носа.
Она открыла окно и слушала, как дождь стучит по крыше.
Он каждое утро ходил на станцию, даже в самые холодные недели зимы.
Зимние вечера длинные, тёмные и прекрасно подходят для чтения.
Весной в городе проходит праздник с музыкой, едой и танцами.
После бури улицы были усыпаны сломанными ветками и листьями.
Река замерзает в декабре, а лёд тает в начале апреля.
Прогноз погоды: утром облачно, днём небольшой дождь, к ночи прояснение.
Сильный северный ветер принесёт холодный воздух и заморозки в четверг.
Сильный снегопад перекрыл несколько дорог и задержал рейсы в аэропорту.
Лето выдалось необычайно жарким и сухим.
Учёные измерили температуру океана на разной глубине.
Фотосинтез превращает энергию света в химическую энергию.
Сердце перекачивает кровь по артериям, венам и капиллярам.
Антибиотики не действуют на вирусы гриппа и простуды.
Врач посоветовал больному отдыхать, пить больше жидкости и принимать лекарство дважды в день.
Регулярные физические упражнения улучшают сон и настроение.
Вакцины учат иммунную систему распознавать возбудителей болезней.
В больнице открылось новое отделение для детей.
Медсёстры работают длинными сменами и ухаживают за пациентами днём и ночью.
Футбольный матч закончился вничью после позднего гола в дополнительное время.
Она выиграла марафон с рекордным временем.
Тренер похвалил молодого вратаря за спокойную и уверенную игру.
Шахматы требуют терпения, памяти и умения планировать на несколько ходов вперёд.
Оркестр настраивал инструменты перед началом симфонии.
Художник использовал яркие краски, чтобы передать свет моря.
Пушкин написал роман в стихах «Евгений Онегин».
Толстой и Достоевский — великие русские писатели девятнадцатого века.
Роман рассказывает о молодом сироте, который ищет свою семью.
Библиотека выдаёт книги, фильмы и музыку и предоставляет бесплатный интернет.
В 1961 году Юрий Гагарин совершил первый полёт человека в космос.
Петр Первый основал Санкт-Петербург в 1703 году.
Римская империя строила дороги, акведуки и города по всей Европе.
Изобретение книгопечатания сделало книги дешевле и доступнее.
Промышленная революция изменила то, как люди работали и жили.
Математика изучает числа, фигуры, структуры и закономерности.
Простое число имеет ровно два делителя: единицу и само себя.
Производная показывает, как меняется функция при изменении аргумента.
Умножение матриц в общем случае не коммутативно.
Сила тяжести удерживает планеты на орбите вокруг Солнца.
Вода кипит при ста градусах Цельсия на уровне моря.
Свет распространяется со скоростью около трёхсот тысяч километров в секунду.
Атомы состоят из протонов, нейтронов и электронов.
Вулканы извергаются, когда давление расплавленной породы становится слишком большим.
Кошка спала на тёплом подоконнике, а собака гонялась за своим хвостом.
Осенью птицы улетают на юг, а весной возвращаются на север.
В лесу было тихо, только вдалеке стучал дятел.
Пчёлы собирают нектар с цветов и превращают его в мёд.
Огород нужно поливать каждый вечер в жаркие недели июля.
Помидоры, огурцы и перец хорошо растут в солнечной теплице.
Фермер убрал пшеницу в августе и засыпал зерно в сухие амбары.
Электромобили используют аккумуляторы, которые заряжаются дома или на станциях.
Солнечные панели преобразуют солнечный свет в электричество.
Мост закрыли на ремонт после того, как инженеры нашли трещины в бетоне.
Новая линия метро соединяет аэропорт с центром города за двадцать минут.
Пожалуйста, заполните анкету, подпишите её и отправьте по электронной почте.
Совещание перенесено на вторник, в три часа, в двенадцатую комнату.
Спасибо за заказ, он будет отправлен в течение двух рабочих дней.
Пароль должен содержать не менее двенадцати символов, включая цифру.
Служба поддержки работает с восьми утра до восьми вечера.
Срок аренды истекает тридцать первого марта и может быть продлён на год.
Продавец гарантирует отсутствие дефектов материалов и изготовления.
Гарантийный срок составляет двенадцать месяцев с даты продажи.
Лицензия разрешает использование, копирование и изменение на определённых условиях.
Интеллектуальная собственность включает патенты, товарные знаки и авторские права.
Суд отложил заседание до получения заключения экспертов.
Истец потребовал возмещения убытков и судебных расходов.
Ответчик отрицал все обвинения и подал встречный иск.
Стороны подписали договор в двух экземплярах, имеющих равную юридическую силу.
Испытательный срок не может превышать трёх месяцев.
Сверхурочная работа оплачивается в полуторном размере.
Аудитор не обнаружил существенных искажений в бухгалтерской отчётности.
Счёт должен содержать ИНН, дату и итоговую сумму с учётом НДС.
Бухгалтер сверил банковские выписки с главной книгой.
Акции резко упали после публикации слабого квартального отчёта.
Звоните по телефону +7 495 123-45-67 или пишите на info@example.ru.
Крайний срок — 31.03.2025, бюджет — полтора миллиона рублей.
Числа 3,14, 2024, 10 000 и 42 % часто встречаются в отчётах.
Детектив внимательно изучил следы и сломанный замок.
Таинственное письмо пришло без марки и обратного адреса.
Капитан приказал команде спустить паруса перед штормом.
Остров был маленьким, зелёным и окружённым коралловыми рифами.
Старый замок стоит на холме над деревней.
На деревянной доске подали свежий хлеб, сыр и оливки.
В деревне был один магазин, одна школа и церковь с высокой колокольней.
Свадьба состоялась в июне под старым дубом.
Дети с нетерпением ждали летних каникул на море.
Он забыл зонт и промок по дороге домой.
Они спорили о политике до полуночи, а потом смеялись над этим.
Не могли бы вы прислать отчёт до конца дня?
Мы с нетерпением ждём совместной работы над этим проектом.
Съешь же ещё этих мягких французских булок да выпей чаю.
Широкая электрификация южных губерний даст мощный толчок подъёму сельского хозяйства.
Ёжик в тумане искал лошадку и звал медвежонка.
Поставка осуществляется партиями согласно спецификации, являющейся приложением к договору.
Право собственности на товар переходит к покупателю с момента его передачи.
Неустойка начисляется в размере одной десятой процента за каждый день просрочки.
Гражданский кодекс регулирует имущественные и личные неимущественные отношения.
Федеральный закон устанавливает порядок государственной регистрации юридических лиц.
Генеральный директор действует от имени общества без доверенности.
Общество с ограниченной ответственностью отвечает по обязательствам своим имуществом.
"""


def _initial_alphabet() -> list[str]:
    cyrillic = [chr(c) for c in range(0x410, 0x450)] + ["ё", "Ё"]
    extra = ["«", "»", "—", "–", "№", "€", "₽", "…", "’", "“", "”", "°", "%"]
    return sorted(set(string.ascii_letters + string.digits + string.punctuation) | set(cyrillic) | set(extra))


def _corpus_lines(vocab_corpus: list[str] | None) -> list[str]:
    lines = [ln for ln in (_CORPUS_EN + _CORPUS_RU).splitlines() if ln.strip()]
    if vocab_corpus:
        lines.extend(str(t) for t in vocab_corpus)
    return lines


def _train_tokenizer(vocab_corpus: list[str] | None, vocab_size: int):  # -> XLMRobertaTokenizerFast
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import XLMRobertaTokenizerFast

    # BPE rather than Unigram: the tokenizers Unigram trainer is not deterministic run to run.
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.normalizer = normalizers.NFKC()
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=_initial_alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_corpus_lines(vocab_corpus), trainer=trainer)
    backend.add_special_tokens([MASK_TOKEN])  # last id, as in XLM-R
    for i, tok in enumerate(SPECIAL_TOKENS):
        assert backend.token_to_id(tok) == i, (tok, backend.token_to_id(tok))
    bos, eos = backend.token_to_id("<s>"), backend.token_to_id("</s>")
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", bos), ("</s>", eos)],
    )
    return XLMRobertaTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token=MASK_TOKEN,
        model_max_length=MODEL_MAX_LENGTH,
    )


def build_tiny_m3(
    target_dir: Path,
    *,
    colbert_dim: int | None = None,
    hidden_size: int = 64,
    num_layers: int = 2,
    vocab_corpus: list[str] | None = None,
    seed: int = 0,
) -> Path:
    """Write a tiny random BGE-M3-shaped model into ``target_dir`` and return its path.

    Args:
        target_dir: Output directory (created if missing; existing files are overwritten).
        colbert_dim: Output size of ``colbert_linear``; ``None`` means ``hidden_size``. When it
            differs from ``hidden_size`` the model must be loaded with
            ``BGEM3FlagModel(..., colbert_dim=colbert_dim)``.
        hidden_size: Transformer width (must be divisible by the head count, 4 or 2).
        num_layers: Number of transformer layers.
        vocab_corpus: Extra lines to train the tokenizer on (in addition to the built-in
            English/Russian corpus); changes the vocabulary and therefore the weights.
        seed: Seed for all random weights. The caller's global torch RNG state is restored.

    Returns:
        ``target_dir`` (absolute). Load with
        ``BGEM3FlagModel(str(path), use_fp16=False, devices="cpu")``.
    """
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    if hidden_size % 4 == 0:
        num_heads = 4
    elif hidden_size % 2 == 0:
        num_heads = 2
    else:
        raise ValueError(f"hidden_size must be even, got {hidden_size}")
    out_dim = hidden_size if colbert_dim is None or colbert_dim <= 0 else colbert_dim

    target = Path(target_dir).expanduser().resolve()
    target.mkdir(parents=True, exist_ok=True)

    tokenizer = _train_tokenizer(vocab_corpus, DEFAULT_VOCAB_SIZE)
    tokenizer.save_pretrained(str(target))

    config = XLMRobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=2 * hidden_size,
        # XLM-R position ids start at padding_idx + 1 = 2, so 8192 tokens need 8194 slots.
        max_position_embeddings=MODEL_MAX_LENGTH + 2,
        type_vocab_size=1,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        layer_norm_eps=1e-5,
        # With HF's default 0.02 every CLS vector of a tiny random model is (nearly) the same.
        initializer_range=0.5,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = XLMRobertaModel(config).eval()
        colbert = torch.nn.Linear(hidden_size, out_dim)
        sparse = torch.nn.Linear(hidden_size, 1)
        with torch.no_grad():
            sparse.weight.mul_(SPARSE_WEIGHT_SCALE)
            sparse.bias.fill_(SPARSE_BIAS)
    model.save_pretrained(str(target), safe_serialization=True)
    torch.save(colbert.state_dict(), target / "colbert_linear.pt")
    torch.save(sparse.state_dict(), target / "sparse_linear.pt")

    pooling_dir = target / "1_Pooling"
    pooling_dir.mkdir(exist_ok=True)
    pooling = {
        "word_embedding_dimension": hidden_size,
        "pooling_mode_cls_token": True,
        "pooling_mode_mean_tokens": False,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    }
    (pooling_dir / "config.json").write_text(json.dumps(pooling, indent=2) + "\n", encoding="utf-8")
    logger.debug(
        "built tiny BGE-M3 at %s (vocab=%d, hidden=%d, layers=%d, colbert_dim=%d)",
        target,
        len(tokenizer),
        hidden_size,
        num_layers,
        out_dim,
    )
    return target
