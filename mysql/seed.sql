-- The five items of the original project (French football history), loaded once into an empty database.
SET NAMES utf8mb4;
INSERT INTO items (name, description) VALUES
    ('Coupe du Monde 1998', 'La France remporte sa première étoile face au Brésil (3-0).'),
    ('Zinédine Zidane', 'Légende du football, célèbre pour sa volée en 2002 et sa roulette.'),
    ('Coupe du Monde 2018', 'Deuxième étoile pour les Bleus, victorieux de la Croatie (4-2) à Moscou.'),
    ('Kylian Mbappé', 'Attaquant prodige, champion du monde à 19 ans et auteur d''un triplé en finale en 2022.'),
    ('Euro 1984', 'Premier titre majeur de l''équipe de France, emmenée par Michel Platini et ses neuf buts.');
